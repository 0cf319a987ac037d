"""Rollouts: preview, create, the operator's transitions, the advancer and node operations.

Level-triggered like a Kubernetes controller: the database holds what should happen; the
advancer (``rollout_advance``) hands free slots to pending operations, workers run them
(``operation_execute``), and both are safe to run twice. Every transition is a conditional
update that fails when the row is not in the expected state, and every change writes an event.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, QuerySet
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Coalesce
from django.utils import timezone

from core.events import event_record
from drivers.base import Driver, DriverError, ErrorCode
from drivers.dropin import MANAGED_FLAGS, managed_subset
from gates.facts import parse_facts
from gates.plans import decide
from nodes.audits import UNREACHABLE_CODES, default_driver, endpoint_for, node_record
from nodes.decisions import node_decision
from nodes.models import Cluster, Node

from .models import (
    OPERATION_ACTIVE_STATES,
    ROLLOUT_ACTIVE_STATES,
    NodeOperation,
    OperationState,
    Rollout,
    RolloutStatus,
)
from .strategy import Strategy, Window, plan_waves, predicted_seconds

log = logging.getLogger(__name__)

FORWARD, ROLLBACK = "forward", "rollback"
TRANSIENT_CODES = (ErrorCode.UNREACHABLE, ErrorCode.TIMEOUT, ErrorCode.ENGINE_ERROR)
NODE_MODES = ("shared", "isolated")


class RolloutError(Exception):
    """A request the rollout service refuses; ``errors`` maps fields to messages."""

    status_code = 400

    def __init__(self, errors: dict[str, list[str]] | str):
        self.errors = errors if isinstance(errors, dict) else {"detail": [errors]}
        super().__init__(str(self.errors))


class RolloutConflict(RolloutError):
    """Nodes already taken by another rollout, or a transition from the wrong state."""

    status_code = 409


# --- targeting and preview ----------------------------------------------------------------------


def target_nodes(*, cluster: Cluster, selector: dict[str, Any]) -> list[Node]:
    """The cluster's nodes matching every label in ``selector["labels"]`` and, when given, named
    in ``selector["nodes"]``, by name."""
    nodes = Node.objects.filter(cluster=cluster).select_related("cluster")
    names = selector.get("nodes") or []
    if names:
        nodes = nodes.filter(name__in=names)
    for index, (key, value) in enumerate((selector.get("labels") or {}).items()):
        alias = f"_label_{index}"
        nodes = nodes.alias(**{alias: KeyTransform(key, "labels")}).filter(**{alias: value})
    return list(nodes.order_by("name"))


def _skip_reason(node: Node, intent: str) -> tuple[str, str, Any]:
    """Why the inventory says this node will not be changed: (code, message, decision)."""
    if not node.managed:
        return "unmanaged", "the node is not managed by this service", None
    if not node.docker_endpoint:
        return "no-endpoint", "the node has no Docker endpoint", None
    if node.audit_error_code in UNREACHABLE_CODES:
        return "unreachable", f"the last audit could not reach it: {node.audit_error}", None
    if node.audit_error_code == ErrorCode.ENGINE_TOO_OLD:
        return "engine-too-old", node.audit_error, None
    decision, error = node_decision(node.facts(), node.cluster.plan, intent)
    if decision is None:
        return "unknown-facts", error, None
    if decision.blockers:
        blocker = decision.blockers[0]
        return blocker.code, blocker.message, decision
    if (
        decision.pid_namespace == intent
        and not decision.changes_required
        and node.observed_pid_namespace
        in (
            intent,
            "unknown",
        )
    ):
        return f"already-{intent}", f"the node is already {intent}", decision
    return "", "", decision


def seconds_per_node(cluster: Cluster) -> float:
    """The mean duration of the cluster's last 100 successful operations, or the default."""
    recent = (
        NodeOperation.objects.filter(
            node__cluster=cluster, state=OperationState.SUCCEEDED, duration_seconds__isnull=False
        )
        .order_by("-finished_at")
        .values_list("duration_seconds", flat=True)[:100]
    )
    values = list(recent)
    return sum(values) / len(values) if values else settings.PIDNS_DEFAULT_SECONDS_PER_NODE


def rollout_preview(*, cluster: Cluster, selector: dict, intent: str, strategy: Strategy) -> dict[str, Any]:
    """What a rollout would do, computed from the inventory; nothing is written."""
    targets, skipped = [], []
    for node in target_nodes(cluster=cluster, selector=selector):
        code, message, decision = _skip_reason(node, intent)
        if code:
            skipped.append({"node": node.name, "node_id": node.pk, "code": code, "reason": message})
        else:
            targets.append((node, decision))
    waves = plan_waves(targets, strategy)
    wave_of = {node.pk: index for index, wave in enumerate(waves) for node, _ in wave}
    per_node = seconds_per_node(cluster)
    busy = _busy_elsewhere([node.pk for node, _ in targets], exclude_rollout=None)
    return {
        "cluster": cluster.name,
        "plan": cluster.plan,
        "intent": intent,
        "targets": [
            {
                "node": node.name,
                "node_id": node.pk,
                "wave": wave_of[node.pk],
                "pid_namespace": decision.pid_namespace,
                "mechanism": decision.mechanism,
                "flag_changes": {k: dict(v) for k, v in decision.flag_changes.items()},
                "warnings": [w.code for w in decision.warnings],
                "rollback": decision.rollback.method,
                "busy_in_rollout": busy.get(node.pk),
            }
            for node, decision in targets
        ],
        "skipped": skipped,
        "waves": [[node.name for node, _ in wave] for wave in waves],
        "seconds_per_node": round(per_node, 3),
        "predicted_seconds": round(predicted_seconds([len(w) for w in waves], strategy, per_node), 1),
    }


def _busy_elsewhere(node_ids: list[int], exclude_rollout: int | None) -> dict[int, int]:
    """Nodes with unfinished operations in another unfinished rollout: node id -> rollout id."""
    ops = NodeOperation.objects.filter(
        node_id__in=node_ids,
        state__in=[OperationState.PENDING, *OPERATION_ACTIVE_STATES],
        rollout__status__in=[RolloutStatus.DRAFT, *ROLLOUT_ACTIVE_STATES],
    )
    if exclude_rollout:
        ops = ops.exclude(rollout_id=exclude_rollout)
    return dict(ops.values_list("node_id", "rollout_id"))


# --- create and transitions ---------------------------------------------------------------------


@transaction.atomic
def rollout_create(
    *,
    actor: str,
    name: str,
    cluster: Cluster,
    intent: str,
    strategy: Strategy,
    selector: dict | None = None,
    busy_policy: str = "refuse",
) -> Rollout:
    """Create a draft rollout with one pending operation per targeted node (skipped ones are
    recorded with their reason). Refuses nodes busy in another rollout unless told to wait."""
    selector = selector or {}
    # Serialise creations per cluster, so two requests cannot both take the same free nodes.
    list(Cluster.objects.select_for_update().filter(pk=cluster.pk))
    preview = rollout_preview(cluster=cluster, selector=selector, intent=intent, strategy=strategy)
    busy = [t for t in preview["targets"] if t["busy_in_rollout"]]
    if busy and busy_policy == "refuse":
        raise RolloutConflict(
            {"nodes": [f"node {t['node']} is in unfinished rollout {t['busy_in_rollout']}" for t in busy]}
        )
    rollout = Rollout.objects.create(
        name=name,
        cluster=cluster,
        selector=selector,
        intent=intent,
        canary_count=strategy.canary_count,
        batch_size=strategy.batch_size,
        batch_percent=strategy.batch_percent,
        max_unavailable=strategy.max_unavailable,
        soak_seconds=strategy.soak_seconds,
        max_failures=strategy.max_failures,
        auto_rollback=strategy.auto_rollback,
        pause_after_canary=strategy.pause_after_canary,
        window=strategy.window.as_dict() if strategy.window else None,
        busy_policy=busy_policy,
        predicted_seconds=preview["predicted_seconds"],
        created_by=actor,
    )
    NodeOperation.objects.bulk_create(
        [
            NodeOperation(rollout=rollout, node_id=t["node_id"], wave=t["wave"], expected_mode=intent)
            for t in preview["targets"]
        ]
        + [
            NodeOperation(
                rollout=rollout,
                node_id=s["node_id"],
                state=OperationState.SKIPPED,
                skip_reason=f"{s['code']}: {s['reason']}"[:200],
                finished_at=timezone.now(),
            )
            for s in preview["skipped"]
        ]
    )
    event_record(
        actor=actor,
        verb="create",
        object_type="rollout",
        object_id=rollout.pk,
        object_repr=name,
        after={
            "cluster": cluster.name,
            "intent": intent,
            "selector": selector,
            "targets": len(preview["targets"]),
            "skipped": len(preview["skipped"]),
            "waves": len(preview["waves"]),
        },
    )
    return rollout


def strategy_of(rollout: Rollout) -> Strategy:
    return Strategy(
        canary_count=rollout.canary_count,
        batch_size=rollout.batch_size,
        batch_percent=rollout.batch_percent,
        max_unavailable=rollout.max_unavailable,
        soak_seconds=rollout.soak_seconds,
        max_failures=rollout.max_failures,
        auto_rollback=rollout.auto_rollback,
        pause_after_canary=rollout.pause_after_canary,
        window=Window.parse(rollout.window) if rollout.window else None,
    )


def _transition(rollout: Rollout, *, actor: str, verb: str, allowed: tuple, to: str, **fields: Any) -> Rollout:
    before = rollout.status
    updated = Rollout.objects.filter(pk=rollout.pk, status__in=allowed).update(status=to, **fields)
    if not updated:
        current = Rollout.objects.filter(pk=rollout.pk).values_list("status", flat=True).first()
        raise RolloutConflict({"status": [f"cannot {verb} a rollout that is {current}"]})
    rollout.refresh_from_db()
    event_record(
        actor=actor,
        verb=verb,
        object_type="rollout",
        object_id=rollout.pk,
        object_repr=rollout.name,
        before={"status": before},
        after={"status": rollout.status, "reason": rollout.reason},
    )
    return rollout


@transaction.atomic
def rollout_submit(*, actor: str, data: dict[str, Any], start: bool = False) -> Rollout:
    """Create a rollout from validated input (``RolloutInputSerializer``) and, when asked, start
    it, both or neither. The caller sends the advancer (``tasks.rollout_kick``) for a started one."""
    rollout = rollout_create(
        actor=actor,
        name=data["name"],
        cluster=data["cluster"],
        intent=data["intent"],
        strategy=data["strategy"],
        selector=data["selector"],
        busy_policy=data["busy_policy"],
    )
    return rollout_start(actor=actor, rollout=rollout) if start else rollout


@transaction.atomic
def rollout_start(*, actor: str, rollout: Rollout) -> Rollout:
    return _transition(
        rollout,
        actor=actor,
        verb="start",
        allowed=(RolloutStatus.DRAFT,),
        to=RolloutStatus.RUNNING,
        started_at=timezone.now(),
        reason="",
    )


@transaction.atomic
def rollout_pause(*, actor: str, rollout: Rollout) -> Rollout:
    """No new operation starts; those in flight finish."""
    return _transition(
        rollout,
        actor=actor,
        verb="pause",
        allowed=(RolloutStatus.RUNNING, RolloutStatus.AWAITING_APPROVAL),
        to=RolloutStatus.PAUSED,
        reason=f"paused by {actor}",
    )


@transaction.atomic
def rollout_resume(*, actor: str, rollout: Rollout) -> Rollout:
    return _transition(
        rollout, actor=actor, verb="resume", allowed=(RolloutStatus.PAUSED,), to=RolloutStatus.RUNNING, reason=""
    )


@transaction.atomic
def rollout_approve(*, actor: str, rollout: Rollout) -> Rollout:
    """Let the rollout go on past its canary wave."""
    return _transition(
        rollout,
        actor=actor,
        verb="approve",
        allowed=(RolloutStatus.AWAITING_APPROVAL,),
        to=RolloutStatus.RUNNING,
        canary_approved=True,
        reason="",
    )


@transaction.atomic
def rollout_abort(*, actor: str, rollout: Rollout) -> Rollout:
    """Stop for good: operations not yet running are cancelled; running ones finish."""
    rollout = _transition(
        rollout,
        actor=actor,
        verb="abort",
        allowed=(RolloutStatus.DRAFT, *ROLLOUT_ACTIVE_STATES),
        to=RolloutStatus.ABORTED,
        finished_at=timezone.now(),
        reason=f"aborted by {actor}",
    )
    rollout.operations.filter(state__in=[OperationState.PENDING, OperationState.DISPATCHED]).update(
        state=OperationState.CANCELLED, finished_at=timezone.now()
    )
    return rollout


def _rollback_operations(rollout: Rollout) -> int:
    """One rollback operation per node whose flags the rollout changed (or may have)."""
    changed = rollout.operations.filter(phase=FORWARD, changed=True, before_flags__isnull=False).select_related("node")
    already = set(rollout.operations.filter(phase=ROLLBACK).values_list("node_id", flat=True))
    ops = [
        NodeOperation(
            rollout=rollout,
            node=op.node,
            phase=ROLLBACK,
            wave=0,
            target_flags=op.before_flags,
            expected_mode=op.before_mode if op.before_mode in NODE_MODES else "",
        )
        for op in changed
        if op.node_id not in already
    ]
    NodeOperation.objects.bulk_create(ops)
    return len(ops)


@transaction.atomic
def rollout_rollback(*, actor: str, rollout: Rollout, reason: str = "") -> Rollout:
    """Return every node the rollout changed to its previous flags, through the same machinery."""
    rollout = _transition(
        rollout,
        actor=actor,
        verb="rollback",
        allowed=(RolloutStatus.SUCCEEDED, RolloutStatus.FAILED, RolloutStatus.ABORTED, RolloutStatus.RUNNING),
        to=RolloutStatus.ROLLING_BACK,
        reason=reason or f"rollback requested by {actor}",
        finished_at=None,
    )
    rollout.operations.filter(phase=FORWARD, state=OperationState.PENDING).update(
        state=OperationState.CANCELLED, finished_at=timezone.now()
    )
    _rollback_operations(rollout)
    return rollout


# --- the advancer -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Advance:
    """What an advancer pass decided: operations to run now, and when to look again."""

    dispatched: list[int]
    recheck_in: float | None = None


def rollout_advance(*, rollout_id: int) -> Advance:
    """Give free slots to pending operations, move between waves, and finish the rollout.

    Serialised per rollout by a row lock (PostgreSQL) or the write lock (SQLite), so the
    in-flight count is never exceeded; safe to call any number of times.
    """
    now = timezone.now()
    with transaction.atomic():
        if not Rollout.objects.filter(pk=rollout_id, status__in=ROLLOUT_ACTIVE_STATES).update(updated_at=now):
            return Advance([])
        rollout = Rollout.objects.select_related("cluster").get(pk=rollout_id)
        if rollout.status == RolloutStatus.RUNNING:
            return _advance_forward(rollout, now)
        if rollout.status == RolloutStatus.ROLLING_BACK:
            return _advance_rollback(rollout, now)
        return Advance([])


def _counts(ops: QuerySet) -> dict[str, int]:
    return dict(ops.order_by().values_list("state").annotate(n=Count("id")))


def _finish(rollout: Rollout, status: str, reason: str, actor: str = "task:rollout_advance") -> None:
    _transition(
        rollout,
        actor=actor,
        verb="finish",
        allowed=(rollout.status,),
        to=status,
        finished_at=timezone.now(),
        reason=reason,
    )


def _advance_forward(rollout: Rollout, now) -> Advance:
    ops = rollout.operations.filter(phase=FORWARD)
    counts = _counts(ops)
    in_flight = sum(counts.get(s, 0) for s in OPERATION_ACTIVE_STATES)
    failed = counts.get(OperationState.FAILED, 0)
    if failed > rollout.max_failures:
        if in_flight:
            return Advance([])  # let the operations in flight land first
        ops.filter(state=OperationState.PENDING).update(state=OperationState.CANCELLED, finished_at=now)
        reason = f"failure budget exceeded: {failed} failed, at most {rollout.max_failures} allowed"
        if rollout.auto_rollback:
            rollout = _transition(
                rollout,
                actor="task:rollout_advance",
                verb="rollback",
                allowed=(RolloutStatus.RUNNING,),
                to=RolloutStatus.ROLLING_BACK,
                reason=f"{reason}; rolling back",
            )
            _rollback_operations(rollout)
            return _advance_rollback(rollout, now)
        _finish(rollout, RolloutStatus.FAILED, reason)
        return Advance([])
    pending = ops.filter(state=OperationState.PENDING)
    next_op = pending.order_by("wave", "id").first()
    if next_op is None:
        if not in_flight:
            done = counts.get(OperationState.SUCCEEDED, 0)
            _finish(
                rollout,
                RolloutStatus.SUCCEEDED,
                f"{done} nodes changed, {counts.get(OperationState.SKIPPED, 0)} skipped, {failed} failed",
            )
        return Advance([])
    if next_op.wave != rollout.current_wave:
        if ops.filter(wave=rollout.current_wave, state__in=OPERATION_ACTIVE_STATES).exists():
            return Advance([])  # the wave is still in flight
        if (
            rollout.current_wave == 0
            and rollout.canary_count
            and rollout.pause_after_canary
            and not rollout.canary_approved
        ):
            _transition(
                rollout,
                actor="task:rollout_advance",
                verb="await-approval",
                allowed=(RolloutStatus.RUNNING,),
                to=RolloutStatus.AWAITING_APPROVAL,
                reason="the canary wave is done; approve to go on",
            )
            return Advance([])
        if rollout.soak_seconds:
            if rollout.soak_until is None:
                Rollout.objects.filter(pk=rollout.pk).update(
                    soak_until=now + timedelta(seconds=rollout.soak_seconds),
                    reason=f"soaking {rollout.soak_seconds}s after wave {rollout.current_wave}",
                )
                return Advance([], recheck_in=rollout.soak_seconds)
            if now < rollout.soak_until:
                return Advance([], recheck_in=(rollout.soak_until - now).total_seconds())
        Rollout.objects.filter(pk=rollout.pk).update(current_wave=next_op.wave, soak_until=None, reason="")
        rollout.current_wave = next_op.wave
    if rollout.window:
        window = Window.parse(rollout.window)
        if not window.contains(now):
            opens = window.next_open(now)
            Rollout.objects.filter(pk=rollout.pk).update(
                reason=f"waiting for the maintenance window ({opens:%a %H:%M %Z})"
            )
            return Advance([], recheck_in=min(60.0, max(1.0, (opens - now).total_seconds())))
    slots = rollout.max_unavailable - in_flight
    candidates = pending.filter(wave=rollout.current_wave).order_by("id")
    return Advance(_dispatch(candidates, slots, now))


def _advance_rollback(rollout: Rollout, now) -> Advance:
    ops = rollout.operations.filter(phase=ROLLBACK)
    counts = _counts(ops)
    in_flight = sum(counts.get(s, 0) for s in OPERATION_ACTIVE_STATES)
    pending = ops.filter(state=OperationState.PENDING)
    if not pending.exists():
        if in_flight:
            return Advance([])
        manual = list(ops.filter(state=OperationState.NEEDS_MANUAL).values_list("node__name", "error"))
        failed = list(ops.filter(state=OperationState.FAILED).values_list("node__name", "error_code"))
        base = rollout.reason.removesuffix("; rolling back")
        if not manual and not failed:
            _finish(
                rollout,
                RolloutStatus.ROLLED_BACK,
                f"{base}; {counts.get(OperationState.SUCCEEDED, 0)} nodes returned to their previous flags",
            )
        else:
            details = [f"{name} needs manual action: {error}" for name, error in manual]
            details += [f"{name} rollback failed ({code})" for name, code in failed]
            _finish(rollout, RolloutStatus.FAILED, f"{base}; rollback incomplete: " + "; ".join(details))
        return Advance([])
    slots = rollout.max_unavailable - in_flight
    return Advance(_dispatch(pending.order_by("id"), slots, now))


def _dispatch(candidates: QuerySet, slots: int, now) -> list[int]:
    """Mark up to ``slots`` pending operations dispatched. A node busy in another rollout (the
    one-active-operation constraint) is passed over and retried on a later pass."""
    dispatched: list[int] = []
    if slots <= 0:
        return dispatched
    for op_id in candidates.values_list("id", flat=True)[: slots + 50]:
        try:
            with transaction.atomic():
                updated = NodeOperation.objects.filter(pk=op_id, state=OperationState.PENDING).update(
                    state=OperationState.DISPATCHED, dispatched_at=now
                )
        except IntegrityError:
            continue
        if updated:
            dispatched.append(op_id)
            if len(dispatched) >= slots:
                break
    return dispatched


# --- running one node operation -----------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    operation: NodeOperation
    retry_in: float | None = None


def operation_claim(*, operation_id: int, worker: str) -> NodeOperation | None:
    """Take a dispatched operation; None when another worker got there first or it was cancelled."""
    now = timezone.now()
    lease = max(settings.PIDNS_OPERATION_LEASE_SECONDS, settings.PIDNS_VERIFY_TIMEOUT * 2)
    claimed = NodeOperation.objects.filter(pk=operation_id, state=OperationState.DISPATCHED).update(
        state=OperationState.RUNNING,
        lease_owner=worker[:200],
        lease_until=now + timedelta(seconds=lease),
        attempts=F("attempts") + 1,
        started_at=Coalesce(F("started_at"), now),
    )
    if not claimed:
        return None
    return NodeOperation.objects.select_related(
        "rollout",
        "rollout__cluster",
        "node",
        "node__cluster",
        "node__docker_credential",
        "node__cluster__docker_credential",
    ).get(pk=operation_id)


def operation_execute(*, operation_id: int, worker: str, driver: Driver | None = None) -> Outcome | None:
    """Preflight, apply and verify one node. Transient engine errors are retried (the
    operation keeps its slot); others fail it. Returns None when it was not this worker's."""
    op = operation_claim(operation_id=operation_id, worker=worker)
    if op is None:
        return None
    driver = driver or default_driver()
    started = time.monotonic()
    try:
        if op.phase == FORWARD:
            _run_forward(op, driver)
        else:
            _run_rollback(op, driver)
    except DriverError as exc:
        op.error_code, op.error = exc.code, exc.message[:2000]
        if exc.code in TRANSIENT_CODES and op.attempts < settings.PIDNS_OPERATION_MAX_ATTEMPTS:
            _save(op, OperationState.DISPATCHED, dispatched_at=timezone.now())
            return Outcome(op, retry_in=min(30.0, 2.0**op.attempts))
        _finish_operation(op, OperationState.FAILED, started)
        return Outcome(op)
    except Exception as exc:
        log.exception("operation %s failed", op.pk)
        op.error_code, op.error = "internal", f"{type(exc).__name__}: {exc}"[:2000]
        _finish_operation(op, OperationState.FAILED, started)
        return Outcome(op)
    _finish_operation(op, op.state, started)
    return Outcome(op)


def _save(op: NodeOperation, state: str, **fields: Any) -> None:
    op.state = state
    for key, value in fields.items():
        setattr(op, key, value)
    op.lease_owner, op.lease_until = "", None
    op.save()


def _finish_operation(op: NodeOperation, state: str, started: float) -> None:
    now = timezone.now()
    worker = op.lease_owner or "worker"
    _save(op, state, finished_at=now, duration_seconds=round(time.monotonic() - started, 3))
    event_record(
        actor=f"task:operation_run:{worker}",
        verb=f"operation-{state}",
        object_type="rollout",
        object_id=op.rollout_id,
        object_repr=f"{op.phase} {op.node.name}",
        before={"flags": op.before_flags, "mode": op.before_mode},
        after={"flags": op.after_flags, "state": state, "error": op.error or op.skip_reason, "attempts": op.attempts},
    )


def _mode_for(intent: str) -> str:
    return "shared" if intent == "shared" else "isolated"


def _run_forward(op: NodeOperation, driver: Driver) -> None:
    node, rollout = op.node, op.rollout
    endpoint = endpoint_for(node)
    facts = driver.facts(endpoint)
    node_record(node=node, facts=facts)
    decision = decide(parse_facts(node.facts()), node.cluster.plan, rollout.intent)
    expected = _mode_for(rollout.intent)
    if decision.blockers:
        op.state, op.skip_reason = (
            OperationState.SKIPPED,
            f"{decision.blockers[0].code}: {decision.blockers[0].message}",
        )
        return
    retried = op.before_flags is not None  # an earlier attempt may have applied already: carry on
    if not retried and not decision.changes_required and facts.observed_pid_namespace == expected:
        op.state, op.skip_reason = OperationState.SKIPPED, f"already-{rollout.intent}: the node is already {expected}"
        return
    target = managed_subset(dict(decision.kubelet_flags))
    if not retried:  # a retried operation keeps what it saw first
        op.before_flags = managed_subset(facts.kubelet_flags)
        op.before_mode = facts.observed_pid_namespace
    op.target_flags = target
    op.changed = op.changed or target != op.before_flags
    op.save(update_fields=["before_flags", "before_mode", "target_flags", "changed"])
    try:
        driver.apply(endpoint, target)
    except DriverError as exc:
        if exc.code == ErrorCode.APPLY_FAILED and op.attempts == 1:
            # The helper writes atomically: a failed write left the node as it was.
            op.changed = False
            op.save(update_fields=["changed"])
        raise
    verified = driver.verify(endpoint, expected, settings.PIDNS_VERIFY_TIMEOUT)
    op.after_flags, op.proof, op.error_code, op.error = target, verified.proof, "", ""
    op.state = OperationState.SUCCEEDED


def _run_rollback(op: NodeOperation, driver: Driver) -> None:
    node = op.node
    endpoint = endpoint_for(node)
    facts = driver.facts(endpoint)
    node_record(node=node, facts=facts)
    target = dict(op.target_flags or {})
    others = {k: v for k, v in node.kubelet_flags.items() if k not in MANAGED_FLAGS}
    decision = decide(parse_facts({**node.facts(), "kubelet_flags": {**others, **target}}), node.cluster.plan)
    if op.expected_mode in NODE_MODES and decision.pid_namespace != op.expected_mode:
        current, _ = node_decision(node.facts(), node.cluster.plan)
        detail = current.rollback.detail if current else decision.rollback.detail
        op.state = OperationState.NEEDS_MANUAL
        op.error_code = decision.rollback.method if current is None else current.rollback.method
        op.error = f"its previous flags no longer give {op.expected_mode}: {detail}"
        return
    driver.apply(endpoint, target)
    if op.expected_mode in NODE_MODES:
        verified = driver.verify(endpoint, op.expected_mode, settings.PIDNS_VERIFY_TIMEOUT)
        op.proof = verified.proof
    op.after_flags, op.error_code, op.error = target, "", ""
    op.state = OperationState.SUCCEEDED


# --- recovery -----------------------------------------------------------------------------------


def operations_recover(*, now=None) -> list[int]:
    """Operations to send to a worker again: running ones whose lease expired (their worker
    died; they go back to dispatched, or fail after too many attempts) and dispatched ones whose
    message seems lost."""
    now = now or timezone.now()
    resend: list[int] = []
    for op in NodeOperation.objects.filter(state=OperationState.RUNNING, lease_until__lt=now):
        if op.attempts >= settings.PIDNS_OPERATION_MAX_ATTEMPTS:
            updated = NodeOperation.objects.filter(pk=op.pk, state=OperationState.RUNNING, lease_until__lt=now).update(
                state=OperationState.FAILED,
                error_code="worker-lost",
                finished_at=now,
                error=f"the worker running it stopped {op.attempts} times",
                lease_owner="",
                lease_until=None,
            )
        else:
            updated = NodeOperation.objects.filter(pk=op.pk, state=OperationState.RUNNING, lease_until__lt=now).update(
                state=OperationState.DISPATCHED,
                dispatched_at=now,
                lease_owner="",
                lease_until=None,
                error=f"worker {op.lease_owner} stopped; running again",
            )
            if updated:
                resend.append(op.pk)
        if updated:
            event_record(
                actor="task:rollouts_reconcile",
                verb="operation-recovered",
                object_type="rollout",
                object_id=op.rollout_id,
                object_repr=f"{op.phase} node {op.node_id}",
                after={"attempts": op.attempts},
            )
    stale = now - timedelta(seconds=settings.PIDNS_DISPATCH_STALE_SECONDS)
    resend += list(
        NodeOperation.objects.filter(state=OperationState.DISPATCHED, dispatched_at__lt=stale).values_list(
            "id", flat=True
        )
    )
    return resend


def rollouts_active() -> list[int]:
    return list(Rollout.objects.filter(status__in=ROLLOUT_ACTIVE_STATES).values_list("id", flat=True))
