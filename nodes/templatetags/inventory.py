"""Template filters for inventory pages."""

from django import template

from gates.policy import BLOCKER_WORDS

from ..drift import describe

register = template.Library()


@register.filter
def drift_text(entries) -> str:
    """Drift entries in words, separated by semicolons; "none" when there are none."""
    if not entries:
        return "none"
    return "; ".join(describe(entry) for entry in entries if isinstance(entry, dict))


@register.filter
def gates_text(gates) -> str:
    """Feature gates as ``--feature-gates`` writes them; "—" when none."""
    if not gates:
        return "—"
    return ",".join(f"{name}={'true' if on else 'false'}" for name, on in sorted(dict(gates).items()))


@register.filter
def blocker_words(code: str) -> str:
    """What a blocker code means, in a line (the code itself when it is not a known one)."""
    return BLOCKER_WORDS.get(code, code)
