"""Reads of rollouts: list annotations and progress, shared by the API, the dashboard and the command."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet

from .models import OPERATION_ACTIVE_STATES, OPERATION_FINAL_STATES, OperationState

# Forward operations, without the ones skipped when the rollout was created.
_FORWARD = Q(operations__phase="forward") & ~Q(
    operations__state=OperationState.SKIPPED, operations__dispatched_at__isnull=True
)


def rollouts_with_counts(queryset: QuerySet) -> QuerySet:
    """Rollouts with ``ops_total``, ``ops_done`` and ``ops_failed`` counted in SQL."""
    return queryset.annotate(
        ops_total=Count("operations", filter=_FORWARD),
        ops_done=Count("operations", filter=_FORWARD & Q(operations__state__in=OPERATION_FINAL_STATES)),
        ops_failed=Count("operations", filter=_FORWARD & Q(operations__state=OperationState.FAILED)),
    )


@dataclass(frozen=True)
class Progress:
    finished: int
    total: int
    failed: int
    in_flight: int

    @property
    def percent(self) -> int:
        return 100 * self.finished // self.total if self.total else 100


def progress_of(states: dict[str, int]) -> Progress:
    """Progress from one phase's operations per state (``services.rollout_counts``)."""
    return Progress(
        finished=sum(states.get(s, 0) for s in OPERATION_FINAL_STATES),
        total=sum(states.values()),
        failed=states.get(OperationState.FAILED, 0),
        in_flight=sum(states.get(s, 0) for s in OPERATION_ACTIVE_STATES),
    )
