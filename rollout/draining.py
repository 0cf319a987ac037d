"""Cordon, drain and uncordon around a node's change, through the cluster's Kubernetes API.

A kubelet restart leaves running pods in the mode they were created in: only a recreated pod
takes the new one. So an operation of a rollout with ``drain`` goes:

* ``cordon``: decide the node's change first (a node with nothing to change is not touched); an
  operator's cordon is left alone and stays after the operation; otherwise the operation records
  that it cordons the node (``NodeOperation.cordoned``, ``Node.cordoned_by_service``) and then
  does.
* ``drain``: evict the node's pods (policy/v1 Eviction), leaving DaemonSet and mirror pods; a
  disruption budget's 429 is tried again with backoff (up to ``PIDNS_DRAIN_RETRY_MAX`` seconds
  apart) until ``drain_timeout`` (``drain-timeout``);
  pods with emptyDir data only when the rollout allows it, and never a pod no controller would
  recreate (``drain-refused``).
* ``apply`` as without a drain, then ``verify`` (:func:`verify_drained`): the kubelet runs with
  the new flags and the node is Ready; the DaemonSet pods it kept are deleted once, so their
  controllers recreate them on the node in the new mode; the pods bound to the node must all run in
  the expected mode, with the ``ps`` proof.
* ``uncordon``: whatever the operation ended in (succeeded, failed, cancelled by an abort, its
  worker lost), an operation that cordoned its node ends here and uncordons it. A node whose
  uncordon could not be done keeps ``cordoned_by_service`` and the reconciler tries again
  (:func:`uncordon_orphans`).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from core.events import event_record
from drivers.base import Driver, DriverError, ErrorCode
from drivers.dropin import render_args
from drivers.kube import KubePod
from nodes.access import endpoint_for, kube_client
from nodes.models import Node, ObservedVia
from nodes.observations import Reading, record_reading

from .models import NodeOperation, OperationState, Rollout
from .operations import (
    STEPS,
    _again,
    _expected_mode,
    _plan_forward,
    _plan_rollback,
    _ready_after,
    _record_verified,
    _refused,
    _Step,
    _succeeded,
)
from .states import APPLY, CORDON, DRAIN, FORWARD, UNCORDON, may_write

log = logging.getLogger(__name__)

DRAIN_TIMEOUT = "drain-timeout"
DRAIN_REFUSED = "drain-refused"
LEFT_ALONE = ("DaemonSet",)


def _may_write(op: NodeOperation) -> bool:
    status = Rollout.objects.filter(pk=op.rollout_id).values_list("status", flat=True).first()
    return status in may_write(op.phase)


def _record(op: NodeOperation, verb: str, **after) -> None:
    event_record(
        actor=f"task:operation:{op.pk}",
        verb=verb,
        object_type="node",
        object_id=op.node_id,
        object_repr=f"{op.node.cluster.name}/{op.node.name}",
        after={"rollout": op.rollout_id, **after},
    )


def _cordon(op: NodeOperation, driver: Driver, worker: str) -> _Step:
    planned = _plan_forward(op) if op.phase == FORWARD else _plan_rollback(op)
    if isinstance(planned, _Step):
        return planned  # nothing to change (or only a person can): the node is not touched
    if not _may_write(op):
        return _Step(action="cancel", fields={"error": "cancelled: the rollout stopped before this operation started"})
    node = op.node
    kube = kube_client(node.cluster)
    seen = kube.node(node.name)
    deadline = timezone.now() + timedelta(seconds=op.rollout.drain_timeout)
    state = {"deadline": deadline.isoformat(), "tries": 0}
    if seen.unschedulable:
        # An operator's cordon: drained through, and left in place afterwards.
        state["operator_cordoned"] = True
        Node.objects.filter(pk=node.pk).update(cordoned=True)
        return _Step(step=DRAIN, fields={"drain_state": state})
    # Recorded before the call: a worker that dies in between leaves a record, and the uncordon
    # of a node the call never reached changes nothing.
    NodeOperation.objects.filter(pk=op.pk, lease_owner=worker[:200], step=CORDON).update(cordoned=True)
    Node.objects.filter(pk=node.pk).update(cordoned_by_service=True)
    op.cordoned = True
    kube.set_unschedulable(node.name, True)
    Node.objects.filter(pk=node.pk).update(cordoned=True)
    _record(op, "node-cordoned")
    return _Step(step=DRAIN, fields={"drain_state": state, "cordoned": True})


def _drain(op: NodeOperation, driver: Driver, worker: str) -> _Step:
    if not _may_write(op):
        return _Step(action="cancel", fields={"error": "cancelled: the rollout stopped while the node drained"})
    node, rollout = op.node, op.rollout
    kube = kube_client(node.cluster)
    state = dict(op.drain_state or {})
    waiting: list[str] = []
    refused: list[str] = []
    for pod in kube.pods_on(node.name):
        if pod.owner_kind in LEFT_ALONE or pod.mirror or pod.phase in ("Succeeded", "Failed"):
            continue
        if pod.terminating:
            waiting.append(pod.key)
        elif pod.empty_dir and not rollout.delete_emptydir_data:
            refused.append(f"{pod.key} (emptyDir data; the rollout does not delete it)")
        elif not pod.owner_kind:
            refused.append(f"{pod.key} (no controller would recreate it)")
        elif kube.evict(pod) == "blocked":
            waiting.append(pod.key)
        else:
            state["evicted"] = state.get("evicted", 0) + 1
    if refused:
        return _Step(
            action="fail",
            fields={
                "drain_state": state,
                "error_code": DRAIN_REFUSED,
                "error": f"the drain would lose pods: {'; '.join(refused[:5])}"[:2000],
            },
        )
    if not waiting:
        state.pop("waiting", None)
        state["drained_at"] = timezone.now().isoformat()
        return _Step(step=APPLY, fields={"drain_state": state})
    now = timezone.now()
    if now >= datetime.fromisoformat(state["deadline"]):
        return _Step(
            action="fail",
            fields={
                "drain_state": state,
                "error_code": DRAIN_TIMEOUT,
                "error": f"{len(waiting)} pods were not evicted within {rollout.drain_timeout}s "
                f"(a disruption budget allowed no eviction): {', '.join(waiting[:5])}"[:2000],
            },
        )
    state["tries"] = state.get("tries", 0) + 1
    state["waiting"] = waiting[:20]
    return _Step(
        step=DRAIN,
        wake_in=min(settings.PIDNS_DRAIN_RETRY_MAX, 0.25 * 2 ** min(state["tries"], 5)),
        fields={"drain_state": state},
    )


def verify_drained(op: NodeOperation, driver: Driver, state: dict) -> _Step:
    """The node is back (kubelet running with the flags written, node Ready); its DaemonSet pods
    are recreated once; then every pod bound to it runs in the expected mode (``ps`` proves it)."""
    node = op.node
    kube = kube_client(node.cluster)
    endpoint = endpoint_for(node)
    now = timezone.now()
    target = dict(op.target_flags or {})
    if not state.get("ready"):
        facts = driver.facts(endpoint)
        refused = _refused(op, facts)
        if refused is not None:
            return refused
        running = (facts.kubelet_status == "running" and facts.kubelet_args == target) or (
            not facts.kubelet_status and not state.get("wrote")
        )
        if not (running and kube.node(node.name).ready):
            if op.deadline and now >= op.deadline:
                record_reading(Reading(node, facts=facts), via=ObservedVia.VERIFY)
                return _Step(
                    action="fail",
                    fields={
                        "error_code": ErrorCode.VERIFY_TIMEOUT,
                        "error": "the node was not Ready with the new flags in time "
                        f"({facts.kubelet_status or 'no kubelet status recorded'})",
                    },
                )
            return _again(op, state, now)
        _ready_after(op, state)
        state["ready"] = True
        state["recreated"] = _recreate_daemon_pods(kube, op)
    expected = _expected_mode(op)
    if not expected:
        proof = [f"kubelet running with {render_args(target) or 'no managed flags'}; node Ready"]
        return _succeeded(op, proof, state)
    pods = [pod for pod in kube.pods_on(node.name) if not pod.terminating]
    bound = {pod.name for pod in pods}
    if sum(1 for pod in pods if pod.owner_kind == "DaemonSet") < state.get("recreated", 0):
        return _again(op, state, now)  # the DaemonSet pods deleted above are not back yet
    poll = driver.poll(endpoint)
    seen = {pod.name for pod in poll.pods if pod.sandbox_running}
    if not bound and not seen:
        _record_verified(op, driver, poll, state)
        flags = render_args(target)
        proof = [f"no pods on the node after the drain; the kubelet runs with {flags}, so pods start {expected}"]
        return _succeeded(op, proof, state)
    if bound <= seen and poll.mode == expected:
        proof = driver.prove(endpoint, poll, expected)
        if proof is not None:
            _record_verified(op, driver, poll, state)
            return _succeeded(op, proof, state)
    if op.deadline and now >= op.deadline:
        _record_verified(op, driver, poll, state)
        return _Step(
            action="fail",
            fields={
                "error_code": ErrorCode.VERIFY_TIMEOUT,
                "error": f"the node's pods did not all run {expected} in time (observed {poll.mode}, "
                f"{len(bound - seen)} bound pods not running yet)",
            },
        )
    return _again(op, state, now)


def _recreate_daemon_pods(kube, op: NodeOperation) -> int:
    """Delete the DaemonSet pods that ran on the node before the change: their controller recreates
    them here, under the new settings (a drain leaves them, and a kubelet restart does not)."""
    count = 0
    for pod in kube.pods_on(op.node.name):
        if pod.owner_kind == "DaemonSet" and not pod.terminating and _older(pod, op.written_at):
            kube.delete_pod(pod)
            count += 1
    return count


def _older(pod: KubePod, moment: datetime | None) -> bool:
    # creationTimestamp has whole seconds: a pod of the same second counts as older.
    return moment is None or pod.created is None or pod.created <= moment


def _uncordon(op: NodeOperation, driver: Driver, worker: str) -> _Step:
    state = dict(op.drain_state or {})
    then = state.pop("then", "succeed")
    node = op.node
    if op.cordoned:
        kube_client(node.cluster).set_unschedulable(node.name, False)
        Node.objects.filter(pk=node.pk).update(cordoned=False, cordoned_by_service=False)
        _record(op, "node-uncordoned", ended=then)
    state["uncordoned_at"] = timezone.now().isoformat()
    return _Step(action=then, fields={"cordoned": False, "drain_state": state})


def through_uncordon(op: NodeOperation, result: _Step) -> _Step:
    """An end reached by an operation that cordoned its node goes through ``uncordon`` first."""
    if result.action is None or not op.cordoned or op.step == UNCORDON:
        return result
    state = {**(op.drain_state or {}), **result.fields.get("drain_state", {}), "then": result.action}
    return _Step(step=UNCORDON, fields={**result.fields, "drain_state": state})


def uncordon_orphans() -> int:
    """Uncordon the nodes this service cordoned whose operation is over (its uncordon failed, or
    its worker was lost for good). Returns how many were uncordoned."""
    done = 0
    stranded = Node.objects.filter(cordoned_by_service=True).exclude(operations__state=OperationState.RUNNING)
    for node in stranded.select_related("cluster"):
        if not node.cluster.has_kube_api:
            continue
        try:
            kube_client(node.cluster).set_unschedulable(node.name, False)
        except DriverError as exc:
            log.warning("could not uncordon %s/%s: %s", node.cluster.name, node.name, exc.message)
            continue
        Node.objects.filter(pk=node.pk).update(cordoned=False, cordoned_by_service=False)
        event_record(
            actor="task:rollouts_reconcile",
            verb="node-uncordoned",
            object_type="node",
            object_id=node.pk,
            object_repr=f"{node.cluster.name}/{node.name}",
            after={"reason": "cordoned by this service, and its operation is over"},
        )
        done += 1
    return done


STEPS.update({CORDON: _cordon, DRAIN: _drain, UNCORDON: _uncordon})
