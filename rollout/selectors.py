"""Reads of rollouts: counts, waves and progress, shared by the API, the dashboard and the command.

"Skipped when created" operations (the node was already in the intended mode, or blocked, when the
rollout was created) are kept for the record but are not part of the rollout's work: every count
here leaves them out the same way, and reports them apart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Max, Q, QuerySet, Sum

from core.models import AuditEvent

from .models import OPERATION_ACTIVE_STATES, OPERATION_FINAL_STATES, OperationState, Rollout

FORWARD, ROLLBACK = "forward", "rollback"
NOT_TARGETED = "skipped_at_creation"

# An operation skipped when the rollout was created: never dispatched, never started.
_SKIPPED_AT_CREATION = Q(state=OperationState.SKIPPED, dispatched_at__isnull=True, started_at__isnull=True)


# The same, from the rollout's side, for annotations.
_FORWARD = Q(operations__phase=FORWARD) & ~Q(
    operations__state=OperationState.SKIPPED,
    operations__dispatched_at__isnull=True,
    operations__started_at__isnull=True,
)


def rollouts_with_counts(queryset: QuerySet) -> QuerySet:
    """Rollouts with ``ops_total``, ``ops_done`` and ``ops_failed`` counted in SQL."""
    return queryset.annotate(
        ops_total=Count("operations", filter=_FORWARD),
        ops_done=Count("operations", filter=_FORWARD & Q(operations__state__in=OPERATION_FINAL_STATES)),
        ops_failed=Count("operations", filter=_FORWARD & Q(operations__state=OperationState.FAILED)),
    )


def rollout_counts(rollout: Rollout) -> dict[str, Any]:
    """Operations per phase and state, in one query, and the number skipped when created."""
    result: dict[str, Any] = {FORWARD: {}, ROLLBACK: {}, NOT_TARGETED: 0}
    rows = (
        rollout.operations.order_by()
        .values_list("phase", "state")
        .annotate(n=Count("id", filter=~_SKIPPED_AT_CREATION), skipped=Count("id", filter=_SKIPPED_AT_CREATION))
    )
    for phase, state, n, skipped in rows:
        if n:
            result[phase][state] = n
        result[NOT_TARGETED] += skipped
    return result


def rollout_waves(rollout: Rollout) -> list[dict[str, Any]]:
    """Per forward wave: size and operations per state, in one query."""
    waves: dict[int, dict[str, Any]] = {}
    rows = (
        rollout.operations.filter(phase=FORWARD)
        .exclude(_SKIPPED_AT_CREATION)
        .order_by()
        .values_list("wave", "state")
        .annotate(n=Count("id"))
    )
    for wave, state, n in rows:
        entry = waves.setdefault(wave, {"wave": wave, "size": 0, "states": {}})
        entry["size"] += n
        entry["states"][state] = n
    return [waves[w] for w in sorted(waves)]


def rollout_fingerprint(rollout: Rollout) -> str:
    """A short value that changes whenever anything shown about the rollout changes (its fields,
    any operation's state, attempts or times, a new event): two queries. Live pages poll with it
    and get 204 No Content while nothing changed."""
    ops = rollout.operations.aggregate(
        n=Count("id"),
        attempts=Sum("attempts"),
        started=Max("started_at"),
        finished=Max("finished_at"),
        dispatched=Max("dispatched_at"),
        running=Count("id", filter=Q(state__in=OPERATION_ACTIVE_STATES)),
        done=Count("id", filter=Q(state__in=OPERATION_FINAL_STATES)),
    )
    last_event = (
        AuditEvent.objects.filter(object_type="rollout", object_id=str(rollout.pk)).aggregate(m=Max("id"))["m"] or 0
    )
    parts = [rollout.status, rollout.reason, rollout.current_wave, rollout.updated_at, last_event]
    return fingerprint([*parts, *(ops[k] for k in sorted(ops))])


def fingerprint(value: Any) -> str:
    """A short, stable digest of what a live page part shows (its ``repr``)."""
    return hashlib.blake2b(repr(value).encode(), digest_size=8).hexdigest()


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
    """Progress from one phase's operations per state (:func:`rollout_counts`)."""
    return Progress(
        finished=sum(states.get(s, 0) for s in OPERATION_FINAL_STATES),
        total=sum(states.values()),
        failed=states.get(OperationState.FAILED, 0),
        in_flight=sum(states.get(s, 0) for s in OPERATION_ACTIVE_STATES),
    )
