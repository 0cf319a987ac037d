"""Helpers for management commands."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from .hostile import HostileInput, checked_arguments


def refuse_hostile(options: dict[str, Any]) -> None:
    """A clear command error for command-line text no database can store."""
    try:
        checked_arguments(options)
    except HostileInput as exc:
        raise CommandError(str(exc)) from None
