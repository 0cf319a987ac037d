"""Reads of rollouts: the preview of a rollout to be, counts, waves and progress, shared by the API,
the dashboard and the command.

"Skipped when created" operations (the node was already in the intended mode, or blocked, when the
rollout was created) are kept for the record but are not part of the rollout's work: every count
here leaves them out the same way, and reports them apart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Avg, Count, Exists, Max, OuterRef, Q, QuerySet, Sum
from django.db.models.fields.json import KeyTransform

from core.catalog import catalog
from core.models import AuditEvent
from nodes.models import Cluster, Node

from .models import (
    OPERATION_ACTIVE_STATES,
    OPERATION_FINAL_STATES,
    ROLLOUT_ACTIVE_STATES,
    NodeOperation,
    OperationState,
    Rollout,
    RolloutStatus,
)
from .planning import Change, NodePlan, plan_node
from .strategy import Strategy, plan_waves, predicted_seconds

FORWARD, ROLLBACK = "forward", "rollback"
NODE_MODES = ("shared", "isolated")
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
    """Rollouts with ``ops_total``, ``ops_done``, ``ops_failed`` and ``ops_cancelled`` counted in
    SQL, and ``changed_any`` (whether any node was changed: what a rollback would undo)."""
    return queryset.annotate(
        ops_total=Count("operations", filter=_FORWARD),
        ops_done=Count("operations", filter=_FORWARD & Q(operations__state__in=OPERATION_FINAL_STATES)),
        ops_failed=Count("operations", filter=_FORWARD & Q(operations__state=OperationState.FAILED)),
        ops_cancelled=Count("operations", filter=_FORWARD & Q(operations__state=OperationState.CANCELLED)),
        changed_any=Exists(NodeOperation.objects.filter(rollout=OuterRef("pk"), phase=FORWARD, changed=True)),
    )


def running_steps(rollout: Rollout) -> dict[str, int]:
    """How many of the rollout's running operations are at each step, in step order."""
    from django.db.models import Count

    from .states import STEPS

    rows = dict(
        rollout.operations.filter(state=OperationState.RUNNING).order_by().values_list("step").annotate(n=Count("id"))
    )
    return {step: rows[step] for step in STEPS if rows.get(step)}


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
    cancelled: int = 0

    @property
    def percent(self) -> int:
        return 100 * self.finished // self.total if self.total else 100

    @property
    def done(self) -> int:
        """Finished as intended (succeeded or skipped): neither failed nor cancelled."""
        return self.finished - self.failed - self.cancelled

    def share(self, n: int) -> float:
        """``n`` as a percentage of the total, for the bar's segments."""
        return round(100 * n / self.total, 2) if self.total else 0.0

    @property
    def segments(self) -> list[tuple[str, float]]:
        """The bar's parts in the order of its legend: done, failed, cancelled."""
        return [
            (kind, self.share(n))
            for kind, n in (("done", self.done), ("failed", self.failed), ("cancelled", self.cancelled))
            if n
        ]


def progress_of(states: dict[str, int]) -> Progress:
    """Progress from one phase's operations per state (:func:`rollout_counts`)."""
    return Progress(
        finished=sum(states.get(s, 0) for s in OPERATION_FINAL_STATES),
        total=sum(states.values()),
        failed=states.get(OperationState.FAILED, 0),
        in_flight=sum(states.get(s, 0) for s in OPERATION_ACTIVE_STATES),
        cancelled=states.get(OperationState.CANCELLED, 0),
    )


# --- targeting and preview: what a rollout would do, computed from the inventory --------------


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


def rollout_pace(rollout: Rollout) -> float | None:
    """The mean duration of the rollout's own successful operations so far, or None."""
    mean = rollout.operations.filter(
        state=OperationState.SUCCEEDED, duration_seconds__isnull=False, phase=FORWARD
    ).aggregate(mean=Avg("duration_seconds"))["mean"]
    return float(mean) if mean is not None else None


_DEFAULT = object()


def seconds_per_node(cluster: Cluster, default: Any = _DEFAULT) -> float | None:
    """The mean duration of the cluster's last 100 successful operations, or ``default``
    (``PIDNS_DEFAULT_SECONDS_PER_NODE`` unless given)."""
    recent = (
        NodeOperation.objects.filter(
            node__cluster=cluster, state=OperationState.SUCCEEDED, duration_seconds__isnull=False
        )
        .order_by("-finished_at")
        .values_list("duration_seconds", flat=True)[:100]
    )
    values = list(recent)
    if values:
        return sum(values) / len(values)
    return settings.PIDNS_DEFAULT_SECONDS_PER_NODE if default is _DEFAULT else default


def rollout_preview(*, cluster: Cluster, selector: dict, change: Change, strategy: Strategy) -> dict[str, Any]:
    """What a rollout would do, computed from the inventory; nothing is written."""
    known = catalog()
    targets: list[tuple[Node, NodePlan]] = []
    skipped = []
    for node in target_nodes(cluster=cluster, selector=selector):
        plan = plan_node(node, change, known)
        if plan.skipped:
            skipped.append({"node": node.name, "node_id": node.pk, "code": plan.code, "reason": plan.message})
        else:
            targets.append((node, plan))
    waves = plan_waves(targets, strategy)
    wave_of = {node.pk: index for index, wave in enumerate(waves) for node, _ in wave}
    per_node = seconds_per_node(cluster)
    busy = busy_elsewhere([node.pk for node, _ in targets], exclude_rollout=None)
    by_code: dict[str, list[str]] = {}
    for entry in skipped:
        by_code.setdefault(entry["code"], []).append(entry["node"])
    return {
        "cluster": cluster.name,
        "plan": cluster.plan,
        "kind": change.kind,
        "intent": change.intent,
        "feature_gates": dict(change.gates),
        "targets": [
            {
                "node": node.name,
                "node_id": node.pk,
                "wave": wave_of[node.pk],
                "pid_namespace": plan.decision.pid_namespace if plan.decision else None,
                "mechanism": plan.decision.mechanism if plan.decision else None,
                "flag_changes": plan.flag_changes(),
                "warnings": plan.warnings,
                "rollback": plan.decision.rollback.method if plan.decision else "kubelet-flag",
                "busy_in_rollout": busy.get(node.pk),
            }
            for node, plan in targets
        ],
        "skipped": skipped,
        "skipped_by_code": dict(sorted(by_code.items())),
        "waves": [[node.name for node, _ in wave] for wave in waves],
        "seconds_per_node": round(per_node, 3),
        "predicted_seconds": round(predicted_seconds([len(w) for w in waves], strategy, per_node), 1),
    }


def busy_elsewhere(node_ids: list[int], exclude_rollout: int | None) -> dict[int, int]:
    """Nodes with unfinished operations in another unfinished rollout: node id -> rollout id."""
    ops = NodeOperation.objects.filter(
        node_id__in=node_ids,
        state__in=[OperationState.PENDING, *OPERATION_ACTIVE_STATES],
        rollout__status__in=[RolloutStatus.DRAFT, *ROLLOUT_ACTIVE_STATES],
    )
    if exclude_rollout:
        ops = ops.exclude(rollout_id=exclude_rollout)
    return dict(ops.values_list("node_id", "rollout_id"))


def rollout_timeline(rollout: Rollout, now=None) -> dict[str, Any]:
    """What happened and what comes, per forward wave: when it started and ended, how long it took,
    then the soak, the approval after the canary (awaited, given by whom, or still to come), and the
    maintenance window (open now, or when it next opens, in its own time zone). Three queries."""
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from django.db.models import Min
    from django.utils import timezone

    from .strategy import Window

    now = now or timezone.now()
    spans = {
        row["wave"]: row
        for row in rollout.operations.filter(phase=FORWARD)
        .exclude(_SKIPPED_AT_CREATION)
        .order_by()
        .values("wave")
        .annotate(
            size=Count("id"),
            started=Min("dispatched_at"),
            ended=Max("finished_at"),
            open=Count("id", filter=Q(state__in=OPERATION_ACTIVE_STATES) | Q(state=OperationState.PENDING)),
        )
    }
    approvals = {
        verb: (created, actor)
        for verb, created, actor in AuditEvent.objects.filter(
            object_type="rollout", object_id=str(rollout.pk), verb__in=("await-approval", "approve")
        )
        .order_by("created_at")
        .values_list("verb", "created_at", "actor")
    }
    waves = []
    last = max(spans) if spans else -1
    for wave in sorted(spans):
        span = spans[wave]
        done = span["open"] == 0 and span["ended"] is not None
        entry = {
            "wave": wave,
            "label": "canary" if wave == 0 and rollout.canary_count else f"wave {wave}",
            "size": span["size"],
            "started": span["started"],
            "ended": span["ended"] if done else None,
            "seconds": (span["ended"] - span["started"]).total_seconds() if done and span["started"] else None,
            "after": [],
        }
        if wave == 0 and rollout.canary_count and rollout.canary_analysis and wave != last:
            evidence = rollout.canary_evidence
            if evidence is None:
                entry["after"].append(("analysis", "then the canary's health decides whether the rollout goes on"))
            else:
                verdict = "healthy: the rollout went on" if evidence["healthy"] else "not healthy: the rollout stopped"
                entry["after"].append(("analysis", f"canary analysis: {verdict}"))
        elif wave == 0 and rollout.canary_count and rollout.pause_after_canary and wave != last:
            if "approve" in approvals:
                when, actor = approvals["approve"]
                entry["after"].append(("approval", f"approved {when:%Y-%m-%d %H:%M:%S %Z} by {actor}"))
            elif "await-approval" in approvals:
                when, _ = approvals["await-approval"]
                entry["after"].append(("approval", f"waiting for approval since {when:%H:%M:%S %Z}"))
            else:
                entry["after"].append(("approval", "then the rollout waits for an operator's approval"))
        if rollout.soak_seconds and wave != last:
            if rollout.soak_until and wave == rollout.current_wave:
                text = f"soaking {rollout.soak_seconds} s, until {rollout.soak_until:%H:%M:%S %Z}"
            elif done and spans.get(wave + 1, {}).get("started"):
                text = f"soaked {rollout.soak_seconds} s"
            else:
                text = f"then a soak of {rollout.soak_seconds} s"
            entry["after"].append(("soak", text))
        waves.append(entry)
    window_text = ""
    if rollout.window:
        window = Window.parse(rollout.window)
        days = ", ".join(DAY_NAMES[d] for d in window.days) if len(window.days) < 7 else "every day"
        span_text = f"{days} {window.start:%H:%M}-{window.end:%H:%M} {window.tz}"
        if window.contains(now):
            window_text = f"maintenance window {span_text}: open now"
        else:
            opens = window.next_open(now).astimezone(ZoneInfo(window.tz))
            wait = opens - now
            words = f"in {int(wait.total_seconds() // 3600)} h {int(wait.total_seconds() % 3600 // 60)} min"
            if wait < timedelta(hours=1):
                words = f"in {max(1, int(wait.total_seconds() // 60))} min"
            window_text = f"maintenance window {span_text}: closed; opens {opens:%a %H:%M %Z} ({words})"
    return {"waves": waves, "by_wave": {entry["wave"]: entry for entry in waves}, "window": window_text}


DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
