"""Errors the rollout services raise; the API's exception handler turns them into answers."""

from core.exceptions import Conflict, DomainError


class RolloutError(DomainError):
    """A request the rollout service refuses; ``errors`` maps fields to messages."""


class RolloutConflict(Conflict, RolloutError):
    """Nodes already taken by another rollout, or a transition from the wrong state."""
