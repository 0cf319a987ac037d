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
def get_item(mapping, key):
    """``mapping[key]`` in a template (None when absent)."""
    return mapping.get(key) if hasattr(mapping, "get") else None
