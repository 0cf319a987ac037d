"""Canary analysis (Argo Rollouts' analysis as the model): when the canary wave ends, evidence is
gathered on each canary node, shown on the approval step, and may decide by itself.

Per canary node:

* **verified**: its operation succeeded with the ``ps`` proof (a failed, cancelled or manual one is
  a problem);
* **Ready**: the node's Ready condition from the cluster's Kubernetes API, else whether its kubelet
  runs (the unit's status, as the verification read it);
* **restarts**: container restarts of the pods created on the node since the change (Kubernetes
  API), more than ``PIDNS_CANARY_MAX_RESTARTS`` is a problem; not measured without an API.

The canary is healthy when it has at least one verified node and no node has a problem. Zombie
processes are not looked for: ``ps`` in the verification proves who PID 1 is, and its output
carries no process states here.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone

from drivers.base import DriverError
from nodes.access import kube_client

from .models import OperationState, Rollout
from .states import FORWARD


def gather(rollout: Rollout) -> dict[str, Any]:
    """The canary's evidence: per node what was seen and its problems, and whether it is healthy."""
    cluster = rollout.cluster
    kube = kube_client(cluster) if cluster.has_kube_api else None
    nodes: list[dict[str, Any]] = []
    ops = (
        rollout.operations.filter(phase=FORWARD, wave=0)
        .exclude(state=OperationState.SKIPPED)
        .select_related("node")
        .order_by("node__name")
    )
    for op in ops:
        node = op.node
        problems: list[str] = []
        verified = op.state == OperationState.SUCCEEDED and bool(op.proof)
        if not verified:
            problems.append(f"not verified: {op.state}{f' ({op.error_code})' if op.error_code else ''}")
        ready, restarts = node.ready, None
        if kube is not None:
            try:
                ready = kube.node(node.name).ready
                since = op.written_at
                restarts = sum(
                    pod.restarts
                    for pod in kube.pods_on(node.name)
                    if since is None or (pod.created is not None and pod.created >= since.replace(microsecond=0))
                )
            except DriverError as exc:
                problems.append(f"the Kubernetes API could not be read: {exc.message}")
        if ready is False:
            problems.append("the node is not Ready")
        if restarts is not None and restarts > settings.PIDNS_CANARY_MAX_RESTARTS:
            problems.append(f"{restarts} container restarts since the change")
        nodes.append(
            {
                "node": node.name,
                "verified": verified,
                "proof": (op.proof or [])[:2],
                "ready": ready,
                "restarts": restarts,
                "problems": problems,
            }
        )
    healthy = bool(nodes) and any(n["verified"] for n in nodes) and not any(n["problems"] for n in nodes)
    return {"healthy": healthy, "gathered_at": timezone.now().isoformat(), "nodes": nodes}


def problems_of(evidence: dict[str, Any]) -> list[str]:
    if not evidence.get("nodes"):
        return ["no canary node was changed"]
    return [f"{n['node']}: {problem}" for n in evidence["nodes"] for problem in n["problems"]]
