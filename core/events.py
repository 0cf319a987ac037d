"""Writing the audit log. Every service that changes something calls :func:`event_record`."""

from __future__ import annotations

from typing import Any

from .models import AuditEvent


def actor_of(request) -> str:
    """Who is acting in an HTTP request: ``token:NAME`` or ``user:NAME``."""
    user = getattr(request, "user", None)
    name = user.get_username() if user is not None and user.is_authenticated else "anonymous"
    kind = "token" if getattr(request, "auth", None) is not None else "user"
    return f"{kind}:{name}"


def event_record(
    *,
    actor: str,
    verb: str,
    object_type: str,
    object_id: Any = "",
    object_repr: str = "",
    before: dict | None = None,
    after: dict | None = None,
) -> AuditEvent:
    """Append one event to the audit log."""
    return AuditEvent.objects.create(
        actor=actor[:200],
        verb=verb,
        object_type=object_type,
        object_id=str(object_id)[:64],
        object_repr=object_repr[:300],
        before=before,
        after=after,
    )
