"""Template filters for the dashboard."""

from django import template

register = template.Library()


@register.filter
def flags(value) -> str:
    """Kubelet flags as the command line writes them: ``--enable-cri=true --x=y``; "—" when none."""
    if not value:
        return "—"
    return " ".join(f"--{key}={val}" for key, val in sorted(dict(value).items()))


@register.filter
def activity(op) -> str:
    """What a running operation is doing, in words (cordoning, draining, restarting, ...)."""
    from rollout.states import activity as words

    return words(op.state, op.step, op.drain_state, op.verify_state)


@register.filter
def get_item(mapping, key):
    """``mapping[key]`` in a template (None when absent)."""
    return mapping.get(key) if hasattr(mapping, "get") else None


def _plain(value) -> str:
    """One recorded value in words: flags-like mappings as ``key=value``, lists joined, JSON
    scalars as they are; "—" for nothing."""
    if value is None or value == "" or value == {} or value == []:
        return "—"
    if isinstance(value, dict):
        return ", ".join(f"{key}={_plain(val)}" for key, val in sorted(value.items()))
    if isinstance(value, list):
        return "; ".join(_plain(item) for item in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


# Fields an event records to link its object (shown as a link, not as a change).
LINKED_FIELDS = {"node_id"}


@register.filter
def as_int(value) -> int | None:
    """``value`` as an id for a link, or None when it is not a whole number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return int(value) if isinstance(value, str) and value.isdigit() else None


@register.filter
def changes(event) -> list[tuple[str, str, str]]:
    """An event's before and after as (field, before, after) lines, for the fields that differ
    (every field when only one side was recorded), in words rather than as Python mappings."""
    before = event.before if isinstance(event.before, dict) else ({"value": event.before} if event.before else {})
    after = event.after if isinstance(event.after, dict) else ({"value": event.after} if event.after else {})
    lines = []
    for field in sorted((set(before) | set(after)) - LINKED_FIELDS):
        old, new = _plain(before.get(field)), _plain(after.get(field))
        if before and after and old == new:
            continue
        lines.append((field, old, new))
    return lines
