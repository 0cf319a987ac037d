"""The advancer: gives free slots to pending operations, moves between waves, and finishes rollouts.

Level-triggered like a Kubernetes controller: the database holds what should happen, and a pass
here moves it along; any number of passes are safe. Two ways in:

* :func:`rollout_advance`, the full pass: start a wave, soak between waves, wait for approval or the
  maintenance window, apply the failure budget, finish the rollout. It runs alone per rollout
  (:func:`rollout.locks.rollout_lock`, exclusive) and takes no lock on the rollout's row.
* :func:`hand_over`, called in the transaction that finishes an operation: it gives the freed slot
  to the next pending operation of the same wave, so a wave flows at its full width without a
  trip through the full pass. Hand-overs run beside each other (the lock is shared) and each keeps
  the number in flight as it was, so ``max_unavailable`` holds exactly.

Every dispatch reads the rollout's status under a share lock (:func:`rollout.locks.status_for_write`)
in the statement's transaction: nothing is dispatched after an abort, a pause or a rollback commits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, F, OuterRef, QuerySet
from django.utils import timezone

from core.events import event_record

from . import analysis
from .locks import rollout_lock, status_for_write
from .models import NodeOperation, OperationState, Rollout, RolloutStatus
from .states import APPLY, CORDON, FORWARD, OPERATION, OPERATION_ACTIVE, ROLLBACK
from .strategy import Window
from .transitions import create_rollback_operations, transition

ACTOR = "task:rollout_advance"


@dataclass(frozen=True)
class Advance:
    """What a pass decided: operations to run now, and when to look again."""

    dispatched: list[int] = field(default_factory=list)
    recheck_in: float | None = None


@dataclass(frozen=True)
class Handover:
    """What a finishing operation did with its slot: the operation it gave it to, or that the
    rollout needs a full pass (the wave is done, the budget is spent, or it was paused)."""

    dispatched: list[int] = field(default_factory=list)
    needs_advance: bool = False


def rollout_advance(*, rollout_id: int) -> Advance:
    """The full pass. Safe to call any number of times, from anywhere."""
    now = timezone.now()
    with transaction.atomic():
        rollout_lock(rollout_id, exclusive=True)
        rollout = Rollout.objects.select_related("cluster").filter(pk=rollout_id).first()
        if rollout is None:
            return Advance()
        if rollout.status == RolloutStatus.RUNNING:
            return _advance_forward(rollout, now)
        if rollout.status == RolloutStatus.ROLLING_BACK:
            return _advance_rollback(rollout, now)
        return Advance()


def hand_over(operation: NodeOperation, now: datetime) -> Handover:
    """Give the slot ``operation`` just freed to the next pending operation of its wave. Call inside
    the transaction that finished ``operation``."""
    rollout_lock(operation.rollout_id, exclusive=False)
    row = status_for_write(operation.rollout_id, ("current_wave", "window", "max_failures"))
    if row is None:
        return Handover()
    status, current_wave, window, max_failures = row
    wanted = RolloutStatus.RUNNING if operation.phase == FORWARD else RolloutStatus.ROLLING_BACK
    if status != wanted:
        return Handover(needs_advance=status in (RolloutStatus.RUNNING, RolloutStatus.ROLLING_BACK))
    ops = NodeOperation.objects.filter(rollout_id=operation.rollout_id, phase=operation.phase)
    if operation.phase == FORWARD:
        if operation.state == OperationState.FAILED and ops.filter(state=OperationState.FAILED).count() > max_failures:
            return Handover(needs_advance=True)
        if isinstance(window, str):  # SQLite hands the raw JSON text to a raw query
            window = json.loads(window)
        if window and not Window.parse(window).contains(now):
            return Handover(needs_advance=True)
        ops = ops.filter(wave=current_wave)
    dispatched = _dispatch(ops.filter(state=OperationState.PENDING), 1, now, drain=operation.rollout.drain)
    return Handover(dispatched=dispatched, needs_advance=not dispatched)


def _stop(rollout: Rollout, ops: QuerySet, reason: str, now: datetime) -> Advance:
    """Stop going forward: nothing pending starts; every changed node is rolled back when the
    rollout rolls back automatically, else the rollout fails, saying why."""
    OPERATION.apply(ops.filter(state=OperationState.PENDING), "cancel", finished_at=now)
    if rollout.auto_rollback:
        rollout = transition(rollout, "auto-rollback", actor=ACTOR, verb="rollback", reason=f"{reason}; rolling back")
        create_rollback_operations(rollout)
        return _advance_rollback(rollout, now)
    _finish(rollout, "fail", reason, now)
    return Advance()


def _canary_evidence(rollout: Rollout) -> dict:
    """The canary's evidence, gathered once when its wave ends (kept on the rollout, shown on the
    approval step) and written to the audit log."""
    if rollout.canary_evidence is not None:
        return rollout.canary_evidence
    evidence = analysis.gather(rollout)
    Rollout.objects.filter(pk=rollout.pk).update(canary_evidence=evidence)
    rollout.canary_evidence = evidence
    event_record(
        actor=ACTOR,
        verb="canary-analysed",
        object_type="rollout",
        object_id=rollout.pk,
        object_repr=rollout.name,
        after={"healthy": evidence["healthy"], "problems": analysis.problems_of(evidence)[:10]},
    )
    return evidence


def _counts(ops: QuerySet) -> dict[str, int]:
    return dict(ops.order_by().values_list("state").annotate(n=Count("id")))


def _finish(rollout: Rollout, action: str, reason: str, now: datetime) -> None:
    transition(rollout, action, actor=ACTOR, verb="finish", finished_at=now, reason=reason)


def _advance_forward(rollout: Rollout, now: datetime) -> Advance:
    ops = rollout.operations.filter(phase=FORWARD)
    counts = _counts(ops)
    in_flight = sum(counts.get(s, 0) for s in OPERATION_ACTIVE)
    failed = counts.get(OperationState.FAILED, 0)
    if failed > rollout.max_failures:
        if in_flight:
            return Advance()  # let the operations in flight land first
        reason = f"failure budget exceeded: {failed} failed, at most {rollout.max_failures} allowed"
        return _stop(rollout, ops, reason, now)
    pending = ops.filter(state=OperationState.PENDING)
    next_op = pending.order_by("wave", "id").first()
    if next_op is None:
        if not in_flight:
            done = counts.get(OperationState.SUCCEEDED, 0)
            skipped = counts.get(OperationState.SKIPPED, 0)
            _finish(rollout, "succeed", f"{done} nodes changed, {skipped} skipped, {failed} failed", now)
        return Advance()
    if next_op.wave != rollout.current_wave:
        if ops.filter(wave=rollout.current_wave, state__in=OPERATION_ACTIVE).exists():
            return Advance()  # the wave is still in flight
        if (
            rollout.current_wave == 0
            and rollout.canary_count
            and (rollout.pause_after_canary or rollout.canary_analysis)
            and not rollout.canary_approved
        ):
            evidence = _canary_evidence(rollout)
            if not rollout.canary_analysis:
                transition(rollout, "await-approval", actor=ACTOR, reason="the canary wave is done; approve to go on")
                return Advance()
            if not evidence["healthy"]:
                reason = "canary analysis failed: " + "; ".join(analysis.problems_of(evidence)[:5])
                return _stop(rollout, ops, reason, now)
            Rollout.objects.filter(pk=rollout.pk).update(canary_approved=True)
            rollout.canary_approved = True
            event_record(
                actor=ACTOR,
                verb="canary-promoted",
                object_type="rollout",
                object_id=rollout.pk,
                object_repr=rollout.name,
                after={"nodes": len(evidence["nodes"])},
            )
        if rollout.soak_seconds:
            if rollout.soak_until is None:
                Rollout.objects.filter(pk=rollout.pk).update(
                    soak_until=now + timedelta(seconds=rollout.soak_seconds),
                    reason=f"soaking {rollout.soak_seconds}s after wave {rollout.current_wave}",
                )
                return Advance(recheck_in=rollout.soak_seconds)
            if now < rollout.soak_until:
                return Advance(recheck_in=(rollout.soak_until - now).total_seconds())
        Rollout.objects.filter(pk=rollout.pk).update(current_wave=next_op.wave, soak_until=None, reason="")
        rollout.current_wave = next_op.wave
    if rollout.window:
        window = Window.parse(rollout.window)
        if not window.contains(now):
            opens = window.next_open(now)
            Rollout.objects.filter(pk=rollout.pk).update(
                reason=f"waiting for the maintenance window ({opens:%a %H:%M %Z})"
            )
            return Advance(recheck_in=min(60.0, max(1.0, (opens - now).total_seconds())))
        if rollout.reason.startswith("waiting for the maintenance window"):
            Rollout.objects.filter(pk=rollout.pk).update(reason="")
    slots = rollout.max_unavailable - in_flight
    return Advance(
        _dispatch(pending.filter(wave=rollout.current_wave), slots, now, RolloutStatus.RUNNING, drain=rollout.drain)
    )


def _advance_rollback(rollout: Rollout, now: datetime) -> Advance:
    ops = rollout.operations.filter(phase=ROLLBACK)
    counts = _counts(ops)
    in_flight = sum(counts.get(s, 0) for s in OPERATION_ACTIVE)
    pending = ops.filter(state=OperationState.PENDING)
    forward_in_flight = rollout.operations.filter(phase=FORWARD, state__in=OPERATION_ACTIVE).exists()
    if not pending.exists():
        if in_flight or forward_in_flight:
            return Advance()
        manual = list(ops.filter(state=OperationState.NEEDS_MANUAL).values_list("node__name", "error"))
        failed = list(ops.filter(state=OperationState.FAILED).values_list("node__name", "error_code"))
        base = rollout.reason.removesuffix("; rolling back")
        if not manual and not failed:
            returned = counts.get(OperationState.SUCCEEDED, 0)
            _finish(rollout, "finish-rollback", f"{base}; {returned} nodes returned to their previous flags", now)
        else:
            details = [f"{name} needs manual action: {error}" for name, error in manual]
            details += [f"{name} rollback failed ({code})" for name, code in failed]
            _finish(rollout, "fail", f"{base}; rollback incomplete: " + "; ".join(details), now)
        return Advance()
    slots = rollout.max_unavailable - in_flight
    return Advance(_dispatch(pending, slots, now, RolloutStatus.ROLLING_BACK, drain=rollout.drain))


def _dispatch(
    candidates: QuerySet, slots: int, now: datetime, status: str | None = None, *, drain: bool = False
) -> list[int]:
    """Start up to ``slots`` of the ``candidates`` (pending operations), first come first served. A
    node busy in another rollout is passed over and tried again on a later pass. When ``status`` is
    given, the rollout's status is read under a share lock first: nothing starts unless it is that.
    With ``drain`` an operation starts by cordoning its node."""
    if slots <= 0:
        return []
    if status is not None:
        rollout_id = candidates.values_list("rollout_id", flat=True).first()
        row = status_for_write(rollout_id) if rollout_id is not None else None
        if row is None or row[0] != status:
            return []
    busy = NodeOperation.objects.filter(node_id=OuterRef("node_id"), state__in=OPERATION_ACTIVE)
    free = candidates.filter(~Exists(busy)).order_by("wave", "id").values_list("id", flat=True)
    dispatched: list[int] = []
    for op_id in free[: slots + 20]:
        try:
            with transaction.atomic():
                moved = OPERATION.apply(
                    NodeOperation.objects.filter(pk=op_id),
                    "dispatch",
                    step=CORDON if drain else APPLY,
                    wake_at=now,
                    dispatched_at=now,
                    attempts=F("attempts") + 1,
                )
        except IntegrityError:  # the node became busy in another rollout meanwhile
            continue
        if moved:
            dispatched.append(op_id)
            if len(dispatched) >= slots:
                break
    return dispatched
