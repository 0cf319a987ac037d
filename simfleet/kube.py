"""A simulated cluster's Kubernetes state: its nodes as the API shows them, its pods and the
controllers that own them, and the disruption budgets that guard evictions.

The pods here are the pods the nodes' kubelet stand-ins run on their engines (fake or real): a pod
bound to a node is created there in the mode its kubelet runs now, and one that leaves the node is
removed from it. A kubelet restart does not touch running pods (see :meth:`SimNode.kubelet_sync`):
only a pod that is recreated (evicted, deleted) takes the new mode.

* A Deployment keeps ``replicas`` pods: an evicted or deleted pod is replaced after
  ``recreate_delay`` seconds on the schedulable, ready node with the fewest of its pods.
* A DaemonSet keeps one pod on every node (cordoned or not); a deleted one comes back on the same
  node.
* A PodDisruptionBudget (a Deployment's ``max_unavailable`` / ``min_available``) refuses an
  eviction with 429 while it allows no disruption. A pod counts as available when it is bound to a
  ready node and has been running for ``ready_delay`` seconds.

Everything is guarded by one lock: the HTTP front, the fleet's loop and the real engine's
stand-in threads all read and write it.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .spec import WorkloadSpec

DOCKER_ENDPOINT_ANNOTATION = "pidns.io/docker-endpoint"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _suffix(length: int = 5) -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass
class Pod:
    namespace: str
    name: str
    node: str
    workload: WorkloadSpec
    owner_name: str
    uid: str = field(default_factory=lambda: secrets.token_hex(16))
    created: float = field(default_factory=time.time)
    started: float = field(default_factory=time.monotonic)

    @property
    def owner_kind(self) -> str:
        return "DaemonSet" if self.workload.kind == "DaemonSet" else "ReplicaSet"


class SimCluster:
    def __init__(self, name: str, workloads: tuple[WorkloadSpec, ...], nodes: list, *, host: str = "127.0.0.1"):
        self.name = name
        self.workloads = {w.name: w for w in workloads}
        self.nodes = {node.spec.name: node for node in nodes}
        self.host = host
        self.token = secrets.token_urlsafe(24)
        self.lock = threading.RLock()
        self.created = time.time()
        self._versions = itertools.count(1)
        self.resource_version = next(self._versions)
        self.unschedulable: dict[str, bool] = dict.fromkeys(self.nodes, False)
        self.uids = {name: secrets.token_hex(16) for name in self.nodes}
        self.pods: dict[tuple[str, str], Pod] = {}
        self.replica_hash = {w.name: _suffix(10) for w in workloads if w.kind == "Deployment"}
        self.recreate_delay = 0.2
        self.ready_delay = 0.1
        self.pending: list[tuple[float, WorkloadSpec, str | None]] = []  # (due, workload, node for a DaemonSet)
        self.unavailable_peak: dict[str, int] = dict.fromkeys(self.workloads, 0)
        self.evictions = 0
        self.refused_evictions = 0
        # Continue tokens issued before this epoch are expired (410), as after an etcd compaction.
        self.continue_epoch = 0
        self.endpoint_of = lambda node: ""  # set by the fleet
        self.port = 0
        self._place_initial()

    # --- placement

    def _place_initial(self) -> None:
        """A DaemonSet's pod on every node; a Deployment's pods round-robin over the ready nodes."""
        names = sorted(self.nodes)
        ready = [name for name in names if self.ready(name)]
        for workload in self.workloads.values():
            if workload.kind == "DaemonSet":
                for node in names:
                    self._add(workload, node)
                continue
            for index in range(workload.replicas):
                if ready:
                    self._add(workload, ready[index % len(ready)])

    def _pod_name(self, workload: WorkloadSpec) -> str:
        if workload.kind == "DaemonSet":
            return f"{workload.name}-{_suffix()}"
        return f"{workload.name}-{self.replica_hash[workload.name]}-{_suffix()}"

    def _owner_name(self, workload: WorkloadSpec) -> str:
        if workload.kind == "DaemonSet":
            return workload.name
        return f"{workload.name}-{self.replica_hash[workload.name]}"

    def _add(self, workload: WorkloadSpec, node: str) -> Pod:
        pod = Pod(workload.namespace, self._pod_name(workload), node, workload, self._owner_name(workload))
        self.pods[(pod.namespace, pod.name)] = pod
        self._bump()
        return pod

    def _bump(self) -> None:
        self.resource_version = next(self._versions)

    def ready(self, node_name: str) -> bool:
        node = self.nodes[node_name]
        return not node.kubelet_error and node.restart_due is None and not node.spec.faults.unreachable

    def schedulable(self, node_name: str) -> bool:
        return not self.unschedulable[node_name] and self.ready(node_name)

    def _choose_node(self, workload: WorkloadSpec) -> str | None:
        counts = {name: 0 for name in self.nodes if self.schedulable(name)}
        if not counts:
            return None
        for pod in self.pods.values():
            if pod.workload.name == workload.name and pod.node in counts:
                counts[pod.node] += 1
        return min(sorted(counts), key=lambda name: counts[name])

    def tick(self) -> list[str]:
        """Let the controllers act: replace the pods that are due. Returns the nodes that got pods."""
        with self.lock:
            now = time.monotonic()
            touched: list[str] = []
            waiting = []
            for due, workload, node in self.pending:
                if due > now:
                    waiting.append((due, workload, node))
                    continue
                target = node if node is not None else self._choose_node(workload)
                if target is None or target not in self.nodes:
                    waiting.append((now + self.recreate_delay, workload, node))  # nowhere to go yet
                    continue
                self._add(workload, target)
                touched.append(target)
            self.pending = waiting
            self._record_unavailable()
            return touched

    def next_due(self) -> float | None:
        with self.lock:
            return min((due for due, _, _ in self.pending), default=None)

    # --- reads

    def pods_on(self, node_name: str) -> list[Pod]:
        with self.lock:
            return [pod for pod in self.pods.values() if pod.node == node_name]

    def available(self, workload: WorkloadSpec) -> int:
        now = time.monotonic()
        return sum(
            1
            for pod in self.pods.values()
            if pod.workload.name == workload.name and self.ready(pod.node) and now - pod.started >= self.ready_delay
        )

    def _record_unavailable(self) -> None:
        for workload in self.workloads.values():
            if workload.kind != "Deployment":
                continue
            present = sum(1 for pod in self.pods.values() if pod.workload.name == workload.name)
            missing = workload.replicas - min(present, workload.replicas)
            self.unavailable_peak[workload.name] = max(self.unavailable_peak[workload.name], missing)

    def disruptions_allowed(self, workload: WorkloadSpec) -> int:
        available = self.available(workload)
        if workload.max_unavailable is not None:
            return max(0, workload.max_unavailable - (workload.replicas - available))
        if workload.min_available is not None:
            return max(0, available - workload.min_available)
        return 1 << 30

    # --- writes

    def set_unschedulable(self, node_name: str, value: bool) -> None:
        with self.lock:
            if self.unschedulable[node_name] != value:
                self.unschedulable[node_name] = value
                self._bump()

    def evict(self, namespace: str, name: str) -> tuple[int, str]:
        """(HTTP status, message) of an eviction: 201, 404, or 429 when a budget forbids it."""
        with self.lock:
            pod = self.pods.get((namespace, name))
            if pod is None:
                return 404, f'pods "{name}" not found'
            if pod.workload.has_budget and self.disruptions_allowed(pod.workload) < 1:
                self.refused_evictions += 1
                return 429, "Cannot evict pod as it would violate the pod's disruption budget."
            self.evictions += 1
            self._remove(pod)
            return 201, ""

    def delete(self, namespace: str, name: str) -> Pod | None:
        with self.lock:
            pod = self.pods.get((namespace, name))
            if pod is not None:
                self._remove(pod)
            return pod

    def _remove(self, pod: Pod) -> None:
        del self.pods[(pod.namespace, pod.name)]
        self._bump()
        node = pod.node if pod.workload.kind == "DaemonSet" else None
        self.pending.append((time.monotonic() + self.recreate_delay, pod.workload, node))
        self._record_unavailable()
        self.nodes[pod.node].schedule_sync(0)

    # --- what the API shows

    def api_version(self) -> str:
        """The control plane's version: the newest kubelet's (a control plane is never older)."""
        from gates.versions import parse_kube_version

        newest = max(parse_kube_version(n.spec.kubelet_version) for n in self.nodes.values())
        return f"v{newest.major}.{newest.minor}.{newest.patch}"

    def node_json(self, name: str) -> dict:
        node = self.nodes[name]
        ready = self.ready(name)
        spec: dict = {}
        if self.unschedulable[name]:
            spec = {
                "unschedulable": True,
                "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}],
            }
        reason = "KubeletReady" if ready else "KubeletNotReady"
        message = "kubelet is posting ready status" if ready else (node.kubelet_error or "kubelet is restarting")
        stamp = rfc3339(self.created)
        annotations = {DOCKER_ENDPOINT_ANNOTATION: self.endpoint_of(node)}
        return {
            "kind": "Node",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "uid": self.uids[name],
                "resourceVersion": str(self.resource_version),
                "creationTimestamp": stamp,
                "labels": {
                    **node.spec.labels,
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                },
                "annotations": annotations,
            },
            "spec": spec,
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True" if ready else "False",
                        "reason": reason,
                        "message": message,
                        "lastHeartbeatTime": rfc3339(time.time()),
                        "lastTransitionTime": stamp,
                    }
                ],
                "addresses": [{"type": "InternalIP", "address": self.host}, {"type": "Hostname", "address": name}],
                "nodeInfo": {
                    "kubeletVersion": node.spec.kubelet_version,
                    "kubeProxyVersion": node.spec.kubelet_version,
                    "containerRuntimeVersion": f"docker://{node.spec.docker_version}",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                    "osImage": "simfleet",
                    "kernelVersion": "simfleet",
                    "machineID": self.uids[name],
                    "systemUUID": self.uids[name],
                    "bootID": self.uids[name],
                },
            },
        }

    def pod_json(self, pod: Pod) -> dict:
        ready = self.ready(pod.node)
        volumes = [{"name": "scratch", "emptyDir": {}}] if pod.workload.empty_dir else []
        return {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                "name": pod.name,
                "namespace": pod.namespace,
                "uid": pod.uid,
                "resourceVersion": str(self.resource_version),
                "creationTimestamp": rfc3339(pod.created),
                "labels": {"app": pod.workload.name},
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": pod.owner_kind,
                        "name": pod.owner_name,
                        "uid": pod.owner_name,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                "nodeName": pod.node,
                "containers": [{"name": "app", "image": "simfleet/app"}],
                "volumes": volumes,
            },
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                "containerStatuses": [
                    {
                        "name": "app",
                        "ready": ready,
                        "restartCount": self._restarts(pod),
                        "image": "simfleet/app",
                        "imageID": "docker://sha256:simfleet",
                        "started": True,
                    }
                ],
                "hostIP": self.host,
                "podIP": "10.0.0.1",
                "startTime": rfc3339(pod.created),
            },
        }

    def _restarts(self, pod: Pod) -> int:
        """A node whose fault says its pods crash under new settings: the pods created after its
        kubelet restarted report that many restarts."""
        node = self.nodes[pod.node]
        if node.restarts and node.spec.faults.pod_restarts and pod.created >= node.restarted_at:
            return node.spec.faults.pod_restarts
        return 0

    def workload_json(self, kind: str, namespace: str, name: str) -> dict | None:
        """A DaemonSet, ReplicaSet or Deployment, as ``kubectl drain`` reads owners."""
        for workload in self.workloads.values():
            if workload.namespace != namespace:
                continue
            if kind == "ReplicaSet" and workload.kind == "Deployment" and self._owner_name(workload) == name:
                owner = {"apiVersion": "apps/v1", "kind": "Deployment", "name": workload.name, "uid": workload.name}
                return self._workload(kind, namespace, name, workload.replicas, [owner])
            if kind == workload.kind and workload.name == name:
                replicas = len(self.nodes) if kind == "DaemonSet" else workload.replicas
                return self._workload(kind, namespace, name, replicas, [])
        return None

    def _workload(self, kind: str, namespace: str, name: str, replicas: int, owners: list) -> dict:
        return {
            "kind": kind,
            "apiVersion": "apps/v1",
            "metadata": {"name": name, "namespace": namespace, "uid": name, "ownerReferences": owners},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}},
            "status": {"replicas": replicas},
        }

    def budgets_json(self) -> list[dict]:
        budgets = []
        for workload in self.workloads.values():
            if not workload.has_budget:
                continue
            spec = {"selector": {"matchLabels": {"app": workload.name}}}
            if workload.max_unavailable is not None:
                spec["maxUnavailable"] = workload.max_unavailable
            else:
                spec["minAvailable"] = workload.min_available
            budgets.append(
                {
                    "kind": "PodDisruptionBudget",
                    "apiVersion": "policy/v1",
                    "metadata": {"name": workload.name, "namespace": workload.namespace, "uid": workload.name},
                    "spec": spec,
                    "status": {
                        "disruptionsAllowed": self.disruptions_allowed(workload),
                        "currentHealthy": self.available(workload),
                        "expectedPods": workload.replicas,
                    },
                }
            )
        return budgets
