"""Node operations: one step at a time, each a short piece of work under a short lease.

A running operation's row says which step is next (``step``) and when it is due (``wake_at``). A
worker claims the row's lease (:func:`operation_claim`), does the step's I/O, and writes the result
with an update guarded by its lease and the step it started from: a worker whose lease was taken
over writes nothing. Between steps the operation holds no worker: a verification that waits for a
slow kubelet is a row that is looked at again shortly (``wake_at``), not a sleeping thread.

Steps (:data:`rollout.states.STEPS`):

* ``apply``: decide the node's flags from its observed facts; pass the write gate (the rollout must
  still allow writing, read under a share lock, and the operation records what it saw before);
  then write the drop-in with a compare-and-set on the kubelet version and the flags it saw. A
  node that changed since it was read is read again and decided afresh. The node's desired state
  becomes what was written.
* ``verify``: one look at the pods per wake-up; when every pod is in the new mode, a second look
  50 ms later in the same step must see the same pods, then ``ps`` in a container is the proof.
  The node's observed state is recorded from that last look, so the inventory is right the moment
  the operation succeeds.

How long to wait is learned (:class:`RestartClock`): the first look of an operation comes when
the rollout's earlier operations first saw their node ready, and a miss backs off in proportion
to the time already waited. The number of looks per operation is then about the same for a
kubelet that restarts in 150 ms or in a minute, and so is its cost.

Transient engine errors retry the step with backoff, up to ``PIDNS_OPERATION_MAX_ATTEMPTS``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from core.catalog import catalog
from core.events import event_record
from drivers.base import Driver, DriverError, ErrorCode, ObservedFacts, PodPoll
from drivers.dropin import Desired, managed_subset, render_args
from drivers.observe import pause_image
from gates.facts import FactsError, parse_facts
from gates.plans import decide
from nodes.access import default_driver, endpoint_for
from nodes.decisions import node_decision, with_desired
from nodes.models import ObservedVia
from nodes.observations import Reading, record_reading
from nodes.services import node_desire

from .advancer import Handover, hand_over
from .leases import lease_keeper
from .locks import status_for_write
from .models import NodeOperation, OperationState, Rollout
from .planning import PID, change_of, plan_node
from .states import APPLY, FORWARD, NODE_MODES, OPERATION, VERIFY, may_write

log = logging.getLogger(__name__)

TRANSIENT_CODES = (ErrorCode.UNREACHABLE, ErrorCode.TIMEOUT, ErrorCode.ENGINE_ERROR)
FIRST_POLL = 0.05
CONFIRM_GAP = 0.05  # between the look that matches and the look that confirms it
CONFLICT = "conflict"
KUBELET_REFUSED = "kubelet-refused"


@dataclass(frozen=True)
class StepOutcome:
    """What a step ended in: the operation as written, when its next step is due (``wake_in``),
    and, when it finished, what became of its slot."""

    operation: NodeOperation
    wake_in: float | None = None
    handover: Handover | None = None

    @property
    def finished(self) -> bool:
        return self.handover is not None


@dataclass
class _Step:
    """What a step handler decided: the next step (and when), or an end (``action``), with fields."""

    action: str | None = None
    step: str | None = None
    wake_in: float = 0.0
    fields: dict[str, Any] = field(default_factory=dict)


def operation_claim(*, operation_id: int, worker: str, now: datetime | None = None) -> NodeOperation | None:
    """Take the lease of a running operation whose step is due; None when it is not due, finished,
    or another worker holds it."""
    now = now or timezone.now()
    lease = timedelta(seconds=settings.PIDNS_OPERATION_LEASE_SECONDS)
    claimed = (
        NodeOperation.objects.filter(pk=operation_id, state=OperationState.RUNNING)
        .filter(Q(wake_at__isnull=True) | Q(wake_at__lte=now))
        .filter(Q(lease_owner="") | Q(lease_until__lt=now))
        .update(lease_owner=worker[:200], lease_until=now + lease, started_at=_coalesce_now(now))
    )
    if not claimed:
        return None
    return NodeOperation.objects.select_related(
        "rollout",
        "node",
        "node__cluster",
        "node__docker_credential",
        "node__cluster__docker_credential",
    ).get(pk=operation_id)


def _coalesce_now(now: datetime):
    from django.db.models.functions import Coalesce

    return Coalesce(F("started_at"), now)


def operation_step(*, operation_id: int, worker: str, driver: Driver | None = None) -> StepOutcome | None:
    """Run the due step of one operation. Returns None when it was not this worker's to run."""
    op = operation_claim(operation_id=operation_id, worker=worker)
    if op is None:
        return None
    return operation_run_claimed(op, worker=worker, driver=driver)


def operation_run_claimed(op: NodeOperation, *, worker: str, driver: Driver | None = None) -> StepOutcome | None:
    """Run the step of an operation this worker has just claimed. None when its lease was taken over."""
    driver = driver or default_driver()
    started = op.step
    try:
        with lease_keeper.holding(op.pk, worker):
            result = STEPS[op.step](op, driver, worker)
    except DriverError as exc:
        result = _on_driver_error(op, exc)
    except Exception as exc:
        log.exception("operation %s failed in step %s", op.pk, op.step)
        result = _Step(action="fail", fields={"error_code": "internal", "error": f"{type(exc).__name__}: {exc}"[:2000]})
    return _save(op, worker, started, draining.through_uncordon(op, result))


def _on_driver_error(op: NodeOperation, exc: DriverError) -> _Step:
    """A transient engine error tries the step again (``attempts`` counts the tries), with backoff;
    any other error, or the last try, fails the operation."""
    fields: dict[str, Any] = {"error_code": exc.code, "error": exc.message[:2000]}
    if exc.code in TRANSIENT_CODES and op.attempts < settings.PIDNS_OPERATION_MAX_ATTEMPTS:
        fields["attempts"] = op.attempts + 1
        return _Step(step=op.step, wake_in=min(30.0, 2.0**op.attempts), fields=fields)
    if exc.code == ErrorCode.APPLY_FAILED and op.step == APPLY:
        fields["changed"] = False  # the helper writes atomically: a failed write left the node as it was
    return _Step(action="fail", fields=fields)


def _save(op: NodeOperation, worker: str, started_step: str, result: _Step) -> StepOutcome | None:
    """Write a step's result, guarded by this worker's lease and the step it began from. The
    operation in memory takes the written values (no read back)."""
    now = timezone.now()
    mine = NodeOperation.objects.filter(
        pk=op.pk, state=OperationState.RUNNING, lease_owner=worker[:200], step=started_step
    )
    release = {"lease_owner": "", "lease_until": None}
    if result.action is None:
        fields = {"step": result.step, "wake_at": now + timedelta(seconds=result.wake_in), **release, **result.fields}
        if not mine.update(**fields):
            return None  # the lease was taken over: that worker's result stands
        _assign(op, fields)
        return StepOutcome(op, wake_in=result.wake_in)
    duration = (now - op.started_at).total_seconds() if op.started_at else None
    fields = {"finished_at": now, "duration_seconds": duration, "wake_at": None, **release, **result.fields}
    with transaction.atomic():
        if not OPERATION.apply(mine, result.action, **fields):
            return None
        _assign(op, {"state": OPERATION[result.action].target, **fields})
        handover = hand_over(op, now)
        event_record(
            actor=f"task:operation:{worker}",
            verb=f"operation-{op.state}",
            object_type="rollout",
            object_id=op.rollout_id,
            object_repr=f"{op.phase} {op.node.name}",
            before={"flags": op.before_flags, "mode": op.before_mode},
            after={
                "flags": op.after_flags,
                "state": op.state,
                "error": op.error or op.skip_reason,
                "attempts": op.attempts,
                "node_id": op.node_id,
            },
        )
    return StepOutcome(op, handover=handover)


def _assign(op: NodeOperation, fields: dict[str, Any]) -> None:
    for name, value in fields.items():
        setattr(op, name, value)


class RestartClock:
    """How long nodes take, from the write to the first look that finds them ready (their pods in
    the new mode, or their kubelet running with the new flags): a moving average per rollout and
    phase, kept in this worker process. A rollout this process has not learned yet starts from its
    cluster's recent operations (the median of the last ``PRIOR_SAMPLE`` that were seen ready,
    read at most once per ``PRIOR_TTL`` per cluster), so the first wave after a canary does not
    start from short waits. A hint, nothing more: a wrong estimate costs a look or two."""

    KEPT = 1000
    PRIOR_SAMPLE = 20
    PRIOR_ROLLOUTS = 5
    PRIOR_TTL = 60.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds: dict[tuple[int, str], float] = {}
        self._priors: dict[int, tuple[float, float | None]] = {}

    def estimate(self, op: NodeOperation) -> float | None:
        learned = self._seconds.get((op.rollout_id, op.phase))
        return learned if learned is not None else self._prior(op.rollout.cluster_id)

    def learn(self, op: NodeOperation, seconds: float) -> None:
        key = (op.rollout_id, op.phase)
        with self._lock:
            previous = self._seconds.pop(key, None)
            self._seconds[key] = seconds if previous is None else 0.7 * previous + 0.3 * seconds
            while len(self._seconds) > self.KEPT:
                self._seconds.pop(next(iter(self._seconds)))

    def _prior(self, cluster_id: int) -> float | None:
        now = time.monotonic()
        cached = self._priors.get(cluster_id)
        if cached is not None and now - cached[0] < self.PRIOR_TTL:
            return cached[1]
        recent = Rollout.objects.filter(cluster_id=cluster_id).order_by("-id").values_list("id", flat=True)
        seen = sorted(
            float(seconds)
            for seconds in NodeOperation.objects.filter(
                rollout_id__in=list(recent[: self.PRIOR_ROLLOUTS]),
                state=OperationState.SUCCEEDED,
                verify_state__has_key="ready_after",
            )
            .order_by("-id")
            .values_list("verify_state__ready_after", flat=True)[: self.PRIOR_SAMPLE]
        )
        prior = seen[len(seen) // 2] if seen else None
        with self._lock:
            self._priors[cluster_id] = (now, prior)
            while len(self._priors) > self.KEPT:
                self._priors.pop(next(iter(self._priors)))
        return prior


restart_clock = RestartClock()


# --- apply ------------------------------------------------------------------------------------------


def _expected_mode(op: NodeOperation) -> str:
    if op.phase == FORWARD:
        return change_of(op.rollout).expected_mode
    return op.expected_mode if op.expected_mode in NODE_MODES and op.rollout.kind == PID else ""


def _gate(op: NodeOperation, worker: str, **fields: Any) -> bool:
    """The write gate: record that this operation is about to write, if its rollout still allows it.
    The rollout's status is read under a share lock, so an abort commits either before (nothing is
    written) or after (the write goes on, and the operation finishes)."""
    with transaction.atomic():
        row = status_for_write(op.rollout_id)
        if row is None or row[0] not in may_write(op.phase):
            return False
        return bool(
            NodeOperation.objects.filter(
                pk=op.pk, state=OperationState.RUNNING, lease_owner=worker[:200], step=APPLY
            ).update(changed=True, written_at=timezone.now(), **fields)
        )


def _apply(op: NodeOperation, driver: Driver, worker: str) -> _Step:
    node = op.node
    endpoint = endpoint_for(node)
    if not op.changed:
        planned = _plan_forward(op) if op.phase == FORWARD else _plan_rollback(op)
        if isinstance(planned, _Step):
            return planned
        before, target = planned
        if not _gate(op, worker, before_flags=before, before_mode=node.observed_pid_namespace, target_flags=target):
            return _Step(
                action="cancel", fields={"error": "cancelled: the rollout stopped before this operation wrote"}
            )
        op.before_flags, op.target_flags, op.changed = before, target, True
    expect_flags = op.before_flags if op.phase == FORWARD else None
    result = driver.apply(
        endpoint, dict(op.target_flags or {}), expect_flags=expect_flags, expect_kubelet=node.kubelet_version or None
    )
    if result.conflict:
        return _conflict(op, driver, endpoint)
    node_desire(node=node, desired=Desired.of(op.target_flags or {}), source=f"rollout {op.rollout_id} ({op.phase})")
    if result.kubelet_version:
        node.kubelet_version = result.kubelet_version
    # A mode change is verified on the pods; a gate change (or a rollback that restores no known
    # mode) on the kubelet, which must be running again with the flags written.
    wait_for = "drained" if op.rollout.drain else "pods" if _expected_mode(op) else "kubelet"
    verify_state = {
        "delay": FIRST_POLL,
        "kubelet": result.kubelet_version,
        "wrote": result.changed,
        "wait_for": wait_for,
    }
    deadline = timezone.now() + timedelta(seconds=settings.PIDNS_VERIFY_TIMEOUT)
    first = 0.0
    if result.changed:
        learned = restart_clock.estimate(op)
        first = FIRST_POLL if learned is None else max(FIRST_POLL, learned)
        verify_state["delay"] = FIRST_POLL if learned is None else max(FIRST_POLL, learned / 20)
    return _Step(
        step=VERIFY,
        wake_in=first,
        fields={"deadline": deadline, "verify_state": verify_state, "error_code": "", "error": ""},
    )


def _plan_forward(op: NodeOperation) -> _Step | tuple[dict, dict]:
    """(flags before, flags to write) for a forward operation, or the step that ends it: the same
    plan the preview showed, made from the node's facts as they are now."""
    plan = plan_node(op.node, change_of(op.rollout), catalog())
    if plan.code == "unknown-facts":
        return _Step(action="fail", fields={"error_code": plan.code, "error": plan.message[:2000]})
    if plan.skipped:
        return _Step(action="skip", fields={"skip_reason": f"{plan.code}: {plan.message}"[:200]})
    return plan.before, plan.target


def _plan_rollback(op: NodeOperation) -> _Step | tuple[dict, dict]:
    """(flags before, flags to write) for a rollback operation, or the step that ends it: a node
    whose previous flags no longer give its previous mode needs a person."""
    node = op.node
    target = dict(op.target_flags or {})
    if op.expected_mode in NODE_MODES:
        try:
            decision = decide(parse_facts(with_desired(node.facts(), Desired.of(target))), node.cluster.plan)
        except FactsError as exc:
            return _Step(action="fail", fields={"error_code": "unknown-facts", "error": str(exc)[:2000]})
        if decision.pid_namespace != op.expected_mode:
            current, _ = node_decision(node.facts(), node.cluster.plan)
            rollback = (current or decision).rollback
            return _Step(
                action="need-manual",
                fields={
                    "error_code": rollback.method,
                    "error": f"its previous flags no longer give {op.expected_mode}: {rollback.detail}"[:2000],
                },
            )
    return managed_subset(node.kubelet_flags or {}), target


def _conflict(op: NodeOperation, driver: Driver, endpoint) -> _Step:
    """The node changed since it was read: read it again, and decide afresh on the next try."""
    facts = driver.facts(endpoint)
    record_reading(Reading(op.node, facts=facts), via=ObservedVia.PREFLIGHT)
    if op.attempts >= settings.PIDNS_OPERATION_MAX_ATTEMPTS:
        return _Step(
            action="fail",
            fields={
                "changed": False,
                "error_code": CONFLICT,
                "error": "the node kept changing under the operation (its kubelet version or flags)",
            },
        )
    return _Step(
        step=APPLY,
        fields={
            "attempts": op.attempts + 1,
            "changed": False,
            "before_flags": None,
            "target_flags": None,
            "error_code": CONFLICT,
            "error": "the node changed since it was read; deciding again",
        },
    )


# --- verify -----------------------------------------------------------------------------------------


def _succeeded(op: NodeOperation, proof: list[str], state: dict | None = None) -> _Step:
    """The end of a verification that found the node as the operation wanted it."""
    fields: dict[str, Any] = {"after_flags": op.target_flags, "proof": proof}
    if state is not None:
        fields["verify_state"] = state
    return _Step(action="succeed", fields=fields)


def _refused(op: NodeOperation, facts: ObservedFacts) -> _Step | None:
    """The kubelet's unit says it does not start with the flags written (or with none recorded):
    the operation fails at once, with the node's reading recorded. None while that is not so."""
    target = dict(op.target_flags or {})
    if not facts.kubelet_status.startswith("failed") or (facts.kubelet_args and facts.kubelet_args != target):
        return None
    record_reading(Reading(op.node, facts=facts), via=ObservedVia.VERIFY)
    return _Step(
        action="fail",
        fields={"error_code": KUBELET_REFUSED, "error": f"the kubelet does not start: {facts.kubelet_status}"},
    )


def _verify(op: NodeOperation, driver: Driver, worker: str) -> _Step:
    state = dict(op.verify_state or {})
    if state.get("wait_for") == "drained":
        return draining.verify_drained(op, driver, state)
    if state.get("wait_for") == "kubelet":
        return _verify_kubelet(op, driver, state)
    return _verify_pods(op, driver, state)


def _verify_pods(op: NodeOperation, driver: Driver, state: dict) -> _Step:
    """One look at the pods. When every pod is in the expected mode, a second look ``CONFIRM_GAP``
    later must see the same pods (a restarting kubelet recreates them one by one), then ``ps`` once
    is the proof. Past the deadline a look that matches still gets its confirming look: the
    deadline is about the node, not about how late the service looked."""
    endpoint = endpoint_for(op.node)
    expected = _expected_mode(op)
    poll = driver.poll(endpoint)
    if poll.mode == expected:
        _ready_after(op, state)
        time.sleep(CONFIRM_GAP)
        first, poll = poll, driver.poll(endpoint)
        if poll.mode == expected and poll.sandboxes == first.sandboxes:
            proof = driver.prove(endpoint, poll, expected)
            if proof is not None:
                _record_verified(op, driver, poll, state)
                return _succeeded(op, proof, state)
    now = timezone.now()
    if op.deadline and now >= op.deadline:
        _record_verified(op, driver, poll, state)
        return _Step(
            action="fail",
            fields={
                "error_code": ErrorCode.VERIFY_TIMEOUT,
                "error": f"pods did not reach {expected} within {settings.PIDNS_VERIFY_TIMEOUT:g}s "
                f"(observed {poll.mode})",
            },
        )
    return _again(op, state, now)


def _ready_after(op: NodeOperation, state: dict) -> None:
    """Teach the clock, the first time this node is seen ready. A node ready at the very first look
    may have been ready earlier (the look says no more than that): the estimate shrinks a little
    (5%), so that nodes that restart faster are found out.
    A node found ready after a miss took about as long as the wait so far."""
    if not (op.written_at and state.get("wrote")) or state.get("ready_seen"):
        return
    state["ready_seen"] = True
    waited = (timezone.now() - op.written_at).total_seconds()
    state["ready_after"] = round(waited, 3)
    learned = restart_clock.estimate(op)
    if state.get("looks", 0) == 0 and learned is not None:
        restart_clock.learn(op, min(waited, learned) * 0.95)
    else:
        restart_clock.learn(op, waited)


def _again(op: NodeOperation, state: dict, now) -> _Step:
    """Look again later: the delay doubles, up to half the time waited so far (at least
    ``PIDNS_VERIFY_POLL``), so the number of looks grows with the logarithm of the wait and a
    node is seen ready at most half its wait late."""
    wait = float(state.get("delay") or FIRST_POLL)
    waited = (now - op.written_at).total_seconds() if op.written_at else 0.0
    state.update(delay=min(wait * 2, max(settings.PIDNS_VERIFY_POLL, waited / 2)), looks=state.get("looks", 0) + 1)
    if op.deadline:
        wait = min(wait, max(0.0, (op.deadline - now).total_seconds()))
    return _Step(step=VERIFY, wake_in=wait, fields={"verify_state": state})


def _verify_kubelet(op: NodeOperation, driver: Driver, state: dict) -> _Step:
    """One read of the node: the kubelet must be running again with the flags written (its unit
    records its state and arguments). A kubelet that refuses them fails the operation at once."""
    facts = driver.facts(endpoint_for(op.node))
    target = dict(op.target_flags or {})
    started_with = facts.kubelet_args == target
    now = timezone.now()
    refused = _refused(op, facts)
    if refused is not None:
        return refused
    if facts.kubelet_status == "running" and started_with:
        _ready_after(op, state)
        record_reading(Reading(op.node, facts=facts), via=ObservedVia.VERIFY)
        proof = [f"kubelet {facts.kubelet_version} running with {render_args(target) or 'no managed flags'}"]
        return _succeeded(op, proof, state)
    if not facts.kubelet_status and not state.get("wrote"):
        # A node whose kubelet unit records nothing, and nothing was changed: nothing to wait for.
        record_reading(Reading(op.node, facts=facts), via=ObservedVia.VERIFY)
        return _succeeded(op, ["flags already written"])
    if op.deadline and now >= op.deadline:
        record_reading(Reading(op.node, facts=facts), via=ObservedVia.VERIFY)
        seen = facts.kubelet_status or "no kubelet status recorded on the node"
        return _Step(
            action="fail",
            fields={
                "error_code": ErrorCode.VERIFY_TIMEOUT,
                "error": f"the kubelet was not running with the new flags within {settings.PIDNS_VERIFY_TIMEOUT:g}s "
                f"({seen})",
            },
        )
    return _again(op, state, now)


def _record_verified(op: NodeOperation, driver: Driver, poll: PodPoll, state: dict) -> None:
    """Record what the verification read as the node's observed state: the flags written, the
    kubelet version the helper reported, the engine's version (as this worker last read it, else as
    the inventory has it: a kubelet restart does not change the engine), and the pods of the last
    look."""
    node = op.node
    info = driver.engine_version(endpoint_for(node), cached=True)
    facts = ObservedFacts(
        docker_version=str(info.get("Version", node.runtime_version)),
        api_version=str(info.get("ApiVersion", node.docker_api_version)),
        kubelet_version=state.get("kubelet") or node.kubelet_version,
        kubelet_flags=dict(op.target_flags or {}),
        pause_image=pause_image(poll.pods),
        observed_pid_namespace=poll.mode,
        pods=poll.pods,
    )
    record_reading(Reading(node, facts=facts), via=ObservedVia.VERIFY)


STEPS = {APPLY: _apply, VERIFY: _verify}  # with the drain steps of :mod:`rollout.draining`

from . import draining  # noqa: E402 (it adds its steps to STEPS and uses this module's helpers)
