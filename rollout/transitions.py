"""Creating rollouts and the operator's transitions: start, pause, resume, approve, abort, rollback.

Each transition is the table's (:data:`rollout.states.ROLLOUT`) applied as one conditional update,
plus what it implies for the rollout's operations, in one transaction, with an event. The caller
sends the advancer (``tasks.rollout_kick``) when the rollout should move on.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from core import webhooks
from core.events import event_record
from nodes.models import Cluster

from . import states
from .errors import RolloutConflict, RolloutError
from .models import NodeOperation, OperationState, Rollout
from .planning import PID, Change
from .selectors import rollout_preview
from .states import FORWARD, OPERATION, ROLLBACK, ROLLOUT
from .strategy import Strategy, Window


@transaction.atomic
def rollout_create(
    *,
    actor: str,
    name: str,
    cluster: Cluster,
    strategy: Strategy,
    intent: str = "",
    change: Change | None = None,
    selector: dict | None = None,
    busy_policy: str = "refuse",
    drain: bool | None = None,
    drain_timeout: int = 600,
    delete_emptydir_data: bool = False,
    canary_analysis: bool = False,
) -> Rollout:
    """Create a draft rollout of ``change`` (or of a mode ``intent``) with one pending operation per
    targeted node (skipped ones are recorded with their reason). Refuses nodes busy in another
    rollout unless told to wait."""
    selector = selector or {}
    change = change or Change(PID, intent=intent)
    if drain is None:
        drain = cluster.has_kube_api  # pods only take a new mode when recreated
    elif drain and not cluster.has_kube_api:
        raise RolloutError({"drain": [f"cluster {cluster.name} has no Kubernetes API to cordon and drain through"]})
    # Serialise creations per cluster, so two requests cannot both take the same free nodes.
    list(Cluster.objects.select_for_update().filter(pk=cluster.pk).values_list("pk"))
    preview = rollout_preview(cluster=cluster, selector=selector, change=change, strategy=strategy)
    busy = [t for t in preview["targets"] if t["busy_in_rollout"]]
    if busy and busy_policy == "refuse":
        raise RolloutConflict(
            {"nodes": [f"node {t['node']} is in unfinished rollout {t['busy_in_rollout']}" for t in busy]}
        )
    rollout = Rollout.objects.create(
        name=name,
        cluster=cluster,
        selector=selector,
        kind=change.kind,
        intent=change.intent,
        gate_changes=dict(change.gates),
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
        drain=drain,
        drain_timeout=drain_timeout,
        delete_emptydir_data=delete_emptydir_data,
        canary_analysis=canary_analysis,
        predicted_seconds=preview["predicted_seconds"],
        created_by=actor,
    )
    now = timezone.now()
    NodeOperation.objects.bulk_create(
        [
            NodeOperation(rollout=rollout, node_id=t["node_id"], wave=t["wave"], expected_mode=change.expected_mode)
            for t in preview["targets"]
        ]
        + [
            NodeOperation(
                rollout=rollout,
                node_id=s["node_id"],
                state=OperationState.SKIPPED,
                skip_reason=f"{s['code']}: {s['reason']}"[:200],
                finished_at=now,
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
            "change": change.label(),
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


def transition(rollout: Rollout, action: str, *, actor: str, verb: str | None = None, **fields: Any) -> Rollout:
    """Apply one transition of the table to the rollout, or raise :class:`RolloutConflict` naming
    the state it is in. Writes the event; returns the rollout as it now is."""
    before = rollout.status
    if not ROLLOUT.apply(Rollout.objects.filter(pk=rollout.pk), action, **fields):
        current = Rollout.objects.filter(pk=rollout.pk).values_list("status", flat=True).first()
        raise RolloutConflict({"status": [f"cannot {action} a rollout that is {current}"]})
    rollout.refresh_from_db()
    event_record(
        actor=actor,
        verb=verb or action,
        object_type="rollout",
        object_id=rollout.pk,
        object_repr=rollout.name,
        before={"status": before},
        after={"status": rollout.status, "reason": rollout.reason},
    )
    if rollout.status in webhooks.ROLLOUT_KINDS:
        webhooks.notify(
            rollout.status,
            f"rollout #{rollout.pk} {rollout.name}",
            {
                "rollout": rollout.pk,
                "cluster": rollout.cluster.name,
                "status": rollout.status,
                "reason": rollout.reason,
                "actor": actor,
                **webhooks.link(f"/rollouts/{rollout.pk}/"),
            },
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
        change=data["change"],
        strategy=data["strategy"],
        selector=data["selector"],
        busy_policy=data["busy_policy"],
        drain=data.get("drain"),
        drain_timeout=data.get("drain_timeout", 600),
        delete_emptydir_data=data.get("delete_emptydir_data", False),
        canary_analysis=data.get("canary_analysis", False),
    )
    return rollout_start(actor=actor, rollout=rollout) if start else rollout


@transaction.atomic
def rollout_start(*, actor: str, rollout: Rollout) -> Rollout:
    return transition(rollout, "start", actor=actor, started_at=timezone.now(), reason="")


@transaction.atomic
def rollout_pause(*, actor: str, rollout: Rollout) -> Rollout:
    """No new operation starts; those in flight finish."""
    return transition(rollout, "pause", actor=actor, reason=f"paused by {actor}")


@transaction.atomic
def rollout_resume(*, actor: str, rollout: Rollout) -> Rollout:
    return transition(rollout, "resume", actor=actor, reason="")


@transaction.atomic
def rollout_approve(*, actor: str, rollout: Rollout) -> Rollout:
    """Let the rollout go on past its canary wave."""
    return transition(rollout, "approve", actor=actor, canary_approved=True, reason="")


def cancel_unstarted(rollout: Rollout, phase: str) -> int:
    """Cancel the operations of ``phase`` that have not written to their node and that no worker
    holds (a held one cancels itself at its write gate). Returns how many."""
    now = timezone.now()
    ops = NodeOperation.objects.filter(rollout=rollout, phase=phase)
    pending = OPERATION.apply(ops.filter(state=OperationState.PENDING), "cancel", finished_at=now)
    idle = OPERATION.apply(
        # One that cordoned its node cancels itself at its next step, through its uncordon.
        ops.filter(state=OperationState.RUNNING, changed=False, lease_owner="", cordoned=False),
        "cancel",
        finished_at=now,
        wake_at=None,
        error="cancelled: the rollout stopped before this operation wrote to the node",
    )
    return pending + idle


@transaction.atomic
def rollout_abort(*, actor: str, rollout: Rollout) -> Rollout:
    """Stop for good, at once: no operation starts after the abort commits. Operations that have not
    written to their node are cancelled; those that have finish verifying (so the inventory records
    what they did). Nothing is rolled back."""
    rollout = transition(rollout, "abort", actor=actor, finished_at=timezone.now(), reason=f"aborted by {actor}")
    for phase in states.PHASES:
        cancel_unstarted(rollout, phase)
    return rollout


def create_rollback_operations(rollout: Rollout) -> int:
    """One rollback operation per node whose flags the rollout wrote (or was committed to write)."""
    changed = rollout.operations.filter(phase=FORWARD, changed=True, before_flags__isnull=False)
    already = set(rollout.operations.filter(phase=ROLLBACK).values_list("node_id", flat=True))
    ops = [
        NodeOperation(
            rollout=rollout,
            node_id=op.node_id,
            phase=ROLLBACK,
            wave=0,
            target_flags=op.before_flags,
            # A mode change is undone to the mode it found; a gate change to the flags it found.
            expected_mode=op.before_mode if rollout.kind == PID and op.before_mode in states.NODE_MODES else "",
        )
        for op in changed.only("node_id", "before_flags", "before_mode")
        if op.node_id not in already
    ]
    NodeOperation.objects.bulk_create(ops)
    return len(ops)


@transaction.atomic
def rollout_rollback(*, actor: str, rollout: Rollout, reason: str = "") -> Rollout:
    """Return every node the rollout changed to its previous flags, through the same machinery."""
    rollout = transition(
        rollout,
        "rollback",
        actor=actor,
        reason=reason or f"rollback requested by {actor}",
        finished_at=None,
    )
    # Checked once the rollout is rolling back: no write can start any more, and one that was
    # under way has committed (it held the rollout's row), so the answer is final.
    if not changed_any(rollout):
        raise RolloutConflict({"status": ["nothing to roll back: this rollout changed no node (abort stops it)"]})
    cancel_unstarted(rollout, FORWARD)
    create_rollback_operations(rollout)
    return rollout


def changed_any(rollout: Rollout) -> bool:
    """Whether the rollout wrote (or was committed to write) to any node: what a rollback undoes.
    Read from ``rollout.changed_any`` when the query annotated it (lists), else asked."""
    known = getattr(rollout, "changed_any", None)
    if known is not None:
        return bool(known)
    return rollout.operations.filter(phase=FORWARD, changed=True).exists()


def rollout_actions(rollout: Rollout) -> list[str]:
    """The actions the rollout offers: those its status allows in the table, without a rollback
    when it changed no node (there would be nothing to undo)."""
    actions = ROLLOUT.actions_from(rollout.status)
    if "rollback" in actions and not changed_any(rollout):
        actions = [action for action in actions if action != "rollback"]
    return actions


# The operator's actions, by name, for the API, the dashboard and the command. Which of them a
# rollout offers comes from the table: ``ROLLOUT.actions_from(rollout.status)``.
ACTIONS = {
    "start": rollout_start,
    "pause": rollout_pause,
    "resume": rollout_resume,
    "approve": rollout_approve,
    "abort": rollout_abort,
    "rollback": rollout_rollback,
}
# Actions after which the advancer should look at the rollout at once.
KICKS = {"start", "resume", "approve", "rollback"}
