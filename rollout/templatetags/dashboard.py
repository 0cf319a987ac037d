"""Template filters for the dashboard."""

from django import template

register = template.Library()


@register.filter
def flags(value) -> str:
    """Kubelet flags as the command line writes them: ``--enable-cri=true --x=y``; "—" when none."""
    if not value:
        return "—"
    return " ".join(f"--{key}={val}" for key, val in sorted(dict(value).items()))
