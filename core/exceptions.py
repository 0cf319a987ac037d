"""Domain errors, and the one place the API turns them (and database trouble) into answers.

Services raise :class:`DomainError` subclasses with errors keyed by field; the DRF exception
handler below maps them to 400/409 in DRF's error shape, so views hold no try/except of their own.
A database that is busy (SQLite's write lock) answers 503 with ``Retry-After`` instead of 500.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.db import DatabaseError, OperationalError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 2


class DomainError(Exception):
    """A request a service refuses. ``errors`` maps fields to messages (DRF's shape)."""

    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, errors: Mapping[str, Any] | str):
        self.errors = dict(errors) if isinstance(errors, Mapping) else {"detail": [errors]}
        super().__init__(errors if isinstance(errors, str) else str(self.errors))

    def payload(self, request=None) -> dict[str, Any]:
        return self.errors


class Conflict(DomainError):
    """The request conflicts with the current state (a transition from the wrong state, a busy node)."""

    status_code = status.HTTP_409_CONFLICT


def is_busy(exc: BaseException) -> bool:
    """Whether a database error only means "try again in a moment" (SQLite's write lock)."""
    return isinstance(exc, OperationalError) and "locked" in str(exc).lower()


MAX_ECHO = 500


def capped(data: Any) -> Any:
    """An error payload with no string longer than MAX_ECHO: a 400 never repeats a huge value back."""
    stack = [data]
    while stack:
        value = stack.pop()
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, item in list(items):
            if isinstance(item, str) and len(item) > MAX_ECHO:
                value[key] = item[: MAX_ECHO - 3] + "..."
            elif isinstance(item, dict | list):
                stack.append(item)
    return data


def api_exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return Response(capped(exc.payload(context.get("request"))), status=exc.status_code)
    if isinstance(exc, DatabaseError) and is_busy(exc):
        log.warning("database busy: %s", exc)
        return Response(
            {"detail": "The database is busy; try again in a moment."},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    response = exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict | list):
        response.data = capped(response.data)
    return response
