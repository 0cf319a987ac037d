"""Fleet specs: which simulated nodes to serve, with their versions, flags, pods and faults.

A spec is YAML or JSON::

    clusters:
      - name: sim-east
        plan: proposal
        nodes:
          - name: east-{i}          # {i} counts 1..count
            count: 4
            kubelet_version: v1.6.4
            docker_version: 1.12.6
            kubelet_flags: {enable-cri: "false"}
            pause_image: k8s.gcr.io/pause-amd64:3.1
            pods: 2                 # pods per node
            containers: 1           # app containers per pod
            labels: {pool: general}
            faults: {latency_ms: 50}

A cluster with ``kubernetes: true`` also gets a Kubernetes API (:mod:`simfleet.kube`) over the same
pods, and its pods belong to ``workloads``::

        kubernetes: true
        workloads:
          - {kind: Deployment, name: web, replicas: 6, max_unavailable: 1}  # a PodDisruptionBudget
          - {kind: Deployment, name: cache, replicas: 2, empty_dir: true}
          - {kind: DaemonSet, name: node-agent}

A Deployment's budget is ``max_unavailable`` or ``min_available`` (none: no budget; 0 unavailable:
a budget that never allows an eviction). Without ``workloads`` the nodes' ``pods`` make one
Deployment, ``app``, with no budget. Its kubelet leaves running pods alone when it restarts, as a
real one does: only a drain moves them to the new mode.

Faults: ``unreachable``, ``latency_ms`` (fixed) or ``latency_ms: [min, max]`` (random),
``apply_fails``, ``verify_never_converges``, ``engine_too_old``, ``flapping_seconds`` (reachability
toggles with this period), ``restart_ms`` (how long the kubelet takes to restart), ``refuses_gates``
(gates this kubelet refuses at start although the catalog knows them: a vendor build without them),
``pod_restarts`` (with a Kubernetes API: the pods the node runs after its kubelet restarted report
this many container restarts, an app that crashes under the new settings).
``config_gates`` are the ``featureGates`` of the node's KubeletConfiguration. A kubelet given a gate
it refuses (unknown, removed, not yet, or locked against its default) does not start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gates.facts import normalize_flags, normalize_gate_map, normalize_labels
from gates.policy import PLANS
from gates.versions import VersionError, parse_docker_version, parse_kube_version

# Engine API version of each Docker release line (what its /version reports).
_API_BY_DOCKER = [
    ((1, 10), "1.22"),
    ((1, 11), "1.23"),
    ((1, 12), "1.24"),
    ((1, 13), "1.25"),
    ((17, 3), "1.26"),
    ((17, 6), "1.30"),
    ((17, 9), "1.32"),
    ((17, 12), "1.35"),
    ((18, 6), "1.38"),
    ((18, 9), "1.39"),
    ((19, 3), "1.40"),
]
FAULT_KEYS = {
    "unreachable",
    "latency_ms",
    "apply_fails",
    "verify_never_converges",
    "engine_too_old",
    "flapping_seconds",
    "restart_ms",
    "refuses_gates",
    "pod_restarts",
}
NODE_KEYS = {
    "name",
    "count",
    "kubelet_version",
    "docker_version",
    "kubelet_flags",
    "pause_image",
    "pods",
    "containers",
    "labels",
    "faults",
    "config_gates",
}


class SpecError(ValueError):
    """A fleet spec that cannot be served; the message says where."""


def api_version_for(docker_version: str) -> str:
    line = parse_docker_version(docker_version).line
    found = "1.22"
    for threshold, api in _API_BY_DOCKER:
        if line >= threshold:
            found = api
    if line >= (1, 13) and line < (17, 0) and parse_docker_version(docker_version).patch >= 1:
        found = "1.26"
    return found


@dataclass(frozen=True)
class Faults:
    unreachable: bool = False
    latency_ms: tuple[float, float] = (0.0, 0.0)
    apply_fails: bool = False
    verify_never_converges: bool = False
    engine_too_old: bool = False
    flapping_seconds: float = 0.0
    restart_ms: float = 0.0
    refuses_gates: tuple[str, ...] = ()
    pod_restarts: int = 0


@dataclass(frozen=True)
class NodeSpec:
    cluster: str
    plan: str
    name: str
    kubelet_version: str
    docker_version: str
    kubelet_flags: dict[str, str] = field(default_factory=dict)
    pause_image: str = "k8s.gcr.io/pause-amd64:3.1"
    pods: int = 2
    containers: int = 1
    labels: dict[str, str] = field(default_factory=dict)
    faults: Faults = Faults()
    config_gates: dict[str, bool] = field(default_factory=dict)

    @property
    def api_version(self) -> str:
        return "1.23" if self.faults.engine_too_old else api_version_for(self.docker_version)


WORKLOAD_KINDS = ("Deployment", "DaemonSet")
WORKLOAD_KEYS = {"kind", "name", "namespace", "replicas", "max_unavailable", "min_available", "empty_dir"}


@dataclass(frozen=True)
class WorkloadSpec:
    kind: str
    name: str
    namespace: str = "default"
    replicas: int = 0  # a DaemonSet has one pod per node
    max_unavailable: int | None = None
    min_available: int | None = None
    empty_dir: bool = False

    @property
    def has_budget(self) -> bool:
        return self.max_unavailable is not None or self.min_available is not None


@dataclass(frozen=True)
class FleetSpec:
    clusters: dict[str, str]  # name -> plan
    nodes: tuple[NodeSpec, ...]
    # Clusters that serve a Kubernetes API, with their workloads.
    kubernetes: dict[str, tuple[WorkloadSpec, ...]] = field(default_factory=dict)
    # What the inventory should want of each cluster's gates, for --register (not simulated).
    desired_gates: dict[str, dict[str, bool]] = field(default_factory=dict)


def _faults(raw: Any, where: str) -> Faults:
    if raw is None:
        return Faults()
    if not isinstance(raw, dict) or set(raw) - FAULT_KEYS:
        raise SpecError(f"{where}: faults must be a map with keys from {', '.join(sorted(FAULT_KEYS))}")
    latency = raw.get("latency_ms", 0)
    if isinstance(latency, (int, float)) and latency >= 0:
        latency_range = (float(latency), float(latency))
    elif (
        isinstance(latency, list) and len(latency) == 2 and all(isinstance(x, (int, float)) and x >= 0 for x in latency)
    ):
        latency_range = (float(min(latency)), float(max(latency)))
    else:
        raise SpecError(f"{where}: latency_ms is a number of milliseconds or [min, max]")
    return Faults(
        unreachable=bool(raw.get("unreachable", False)),
        latency_ms=latency_range,
        apply_fails=bool(raw.get("apply_fails", False)),
        verify_never_converges=bool(raw.get("verify_never_converges", False)),
        engine_too_old=bool(raw.get("engine_too_old", False)),
        flapping_seconds=float(raw.get("flapping_seconds", 0) or 0),
        restart_ms=float(raw.get("restart_ms", 0) or 0),
        refuses_gates=tuple(str(name) for name in raw.get("refuses_gates") or ()),
        pod_restarts=int(raw.get("pod_restarts", 0) or 0),
    )


def _workloads(raw: Any, where: str) -> list[WorkloadSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise SpecError(f"{where}: workloads is a list")
    found: list[WorkloadSpec] = []
    for index, item in enumerate(raw):
        at = f"{where}.workloads[{index}]"
        if not isinstance(item, dict) or set(item) - WORKLOAD_KEYS:
            raise SpecError(f"{at}: a workload is a map with keys from {', '.join(sorted(WORKLOAD_KEYS))}")
        if item.get("kind") not in WORKLOAD_KINDS or not isinstance(item.get("name"), str):
            raise SpecError(f"{at}: needs a kind ({' or '.join(WORKLOAD_KINDS)}) and a name")
        numbers = {k: item.get(k) for k in ("replicas", "max_unavailable", "min_available") if item.get(k) is not None}
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in numbers.values()):
            raise SpecError(f"{at}: replicas, max_unavailable and min_available are whole numbers")
        if "max_unavailable" in numbers and "min_available" in numbers:
            raise SpecError(f"{at}: a budget has max_unavailable or min_available, not both")
        found.append(
            WorkloadSpec(
                kind=item["kind"],
                name=item["name"],
                namespace=str(item.get("namespace", "default")),
                replicas=numbers.get("replicas", 0),
                max_unavailable=numbers.get("max_unavailable"),
                min_available=numbers.get("min_available"),
                empty_dir=bool(item.get("empty_dir", False)),
            )
        )
    return found


def parse_spec(data: Any) -> FleetSpec:
    if not isinstance(data, dict) or not isinstance(data.get("clusters"), list):
        raise SpecError("a fleet spec is a map with a 'clusters' list")
    clusters: dict[str, str] = {}
    desired_gates: dict[str, dict[str, bool]] = {}
    nodes: list[NodeSpec] = []
    kubernetes: dict[str, tuple[WorkloadSpec, ...]] = {}
    seen: set[tuple[str, str]] = set()
    for ci, cluster in enumerate(data["clusters"]):
        where = f"clusters[{ci}]"
        if not isinstance(cluster, dict) or not isinstance(cluster.get("name"), str):
            raise SpecError(f"{where}: needs a name")
        plan = cluster.get("plan", "proposal")
        if plan not in PLANS:
            raise SpecError(f"{where}: plan must be one of {', '.join(PLANS)}")
        clusters[cluster["name"]] = plan
        try:
            cluster_gates = normalize_gate_map(cluster.get("desired_gates") or {})
        except ValueError as exc:
            raise SpecError(f"{where}: desired_gates: {exc}") from None
        if cluster_gates:
            desired_gates[cluster["name"]] = cluster_gates
        workloads = _workloads(cluster.get("workloads"), where)
        if workloads and not cluster.get("kubernetes"):
            raise SpecError(f"{where}: workloads need kubernetes: true")
        first_node = len(nodes)
        for ni, group in enumerate(cluster.get("nodes") or []):
            gwhere = f"{where}.nodes[{ni}]"
            if not isinstance(group, dict) or set(group) - NODE_KEYS:
                raise SpecError(f"{gwhere}: a node group is a map with keys from {', '.join(sorted(NODE_KEYS))}")
            try:
                kubelet = str(group["kubelet_version"])
                docker_version = str(group["docker_version"])
                parse_kube_version(kubelet)
                parse_docker_version(docker_version)
                flags = normalize_flags(group.get("kubelet_flags") or {})
                labels = normalize_labels(group.get("labels") or {})
                config_gates = normalize_gate_map(group.get("config_gates") or {})
            except KeyError as exc:
                raise SpecError(f"{gwhere}: {exc.args[0]} is required") from None
            except (VersionError, ValueError) as exc:
                raise SpecError(f"{gwhere}: {exc}") from None
            count = group.get("count", 1)
            pods, containers = group.get("pods", 2), group.get("containers", 1)
            if not all(isinstance(x, int) and x >= 0 for x in (count, pods, containers)) or count < 1:
                raise SpecError(f"{gwhere}: count, pods and containers are whole numbers (count at least 1)")
            pattern = str(group.get("name", "node-{i}"))
            for i in range(1, count + 1):
                name = pattern.replace("{i}", f"{i:02d}" if count < 100 else f"{i:04d}")
                if (cluster["name"], name) in seen:
                    raise SpecError(f"{gwhere}: node {name} appears twice in cluster {cluster['name']}")
                seen.add((cluster["name"], name))
                nodes.append(
                    NodeSpec(
                        cluster=cluster["name"],
                        plan=plan,
                        name=name,
                        kubelet_version=kubelet,
                        docker_version=docker_version,
                        kubelet_flags=flags,
                        pause_image=str(group.get("pause_image", "k8s.gcr.io/pause-amd64:3.1")),
                        pods=pods,
                        containers=containers,
                        labels=labels,
                        faults=_faults(group.get("faults"), gwhere),
                        config_gates=config_gates,
                    )
                )
        if cluster.get("kubernetes"):
            if not workloads:
                replicas = sum(n.pods for n in nodes[first_node:])
                workloads = [WorkloadSpec(kind="Deployment", name="app", replicas=replicas)] if replicas else []
            kubernetes[cluster["name"]] = tuple(workloads)
    return FleetSpec(clusters=clusters, nodes=tuple(nodes), desired_gates=desired_gates, kubernetes=kubernetes)


def load_spec(path: Path) -> FleetSpec:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SpecError(f"cannot read {path}: {str(exc)[:300]}") from None
    except RecursionError:
        raise SpecError(f"cannot read {path}: nested too deep") from None
    return parse_spec(data)
