"""Upgrade check: before a cluster's kubelets move to a new version, which nodes' gates would stop
the new kubelet from starting, and which become no-ops. Reads only; one query over the cluster's
nodes, each distinct set of gates judged once."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from drivers.dropin import effective_gates
from gates.catalog import Catalog
from gates.gatecheck import GATE_GA, validate

from .models import Cluster, Node

LISTED = 50  # node names listed per finding


@dataclass
class _Finding:
    gate: str
    code: str
    message: str
    nodes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "code": self.code,
            "message": self.message,
            "count": len(self.nodes),
            "nodes": sorted(self.nodes)[:LISTED],
        }


def _judge(groups: dict[tuple, list[str]], kubelet_version: str, catalog: Catalog) -> dict[str, Any]:
    problems: dict[tuple[str, str], _Finding] = {}
    no_ops: dict[str, _Finding] = {}
    failing: set[str] = set()
    for key, names in groups.items():
        check = validate(kubelet_version, dict(key), catalog)
        for problem in check.problems:
            finding = problems.setdefault(
                (problem.gate, problem.code), _Finding(problem.gate, problem.code, problem.message)
            )
            finding.nodes += names
            failing.update(names)
        for warning in check.warnings:
            if warning.code == GATE_GA:
                no_ops.setdefault(warning.gate, _Finding(warning.gate, GATE_GA, warning.message)).nodes += names
    ordered = sorted(problems.values(), key=lambda f: (-len(f.nodes), f.gate))
    return {
        "would_not_start": len(failing),
        "problems": [f.as_dict() for f in ordered],
        "no_ops": [f.as_dict() for f in sorted(no_ops.values(), key=lambda f: (-len(f.nodes), f.gate))],
        "summary": _summary(len(failing), ordered),
    }


def _summary(failing: int, problems: list[_Finding]) -> str:
    if not failing:
        return "every kubelet would start"
    reasons = "; ".join(f"{f.gate} {f.message.split('(', 1)[-1].rstrip(')')}" for f in problems[:3])
    return f"the kubelet would not start on {failing} node{'s' if failing != 1 else ''}: {reasons}"


def upgrade_check(*, cluster: Cluster, kubelet_version: str, catalog: Catalog) -> dict[str, Any]:
    """Judge every node's current gates (what its kubelet runs with) and desired gates (what the
    service wants of it) against ``kubelet_version``. Raises GateInputError for a bad version."""
    current: dict[tuple, list[str]] = defaultdict(list)
    desired: dict[tuple, list[str]] = defaultdict(list)
    total = 0
    rows = (
        Node.objects.filter(cluster=cluster)
        .values_list("name", "observed_gates", "desired_gates")
        .iterator(chunk_size=5000)
    )
    for name, observed, overrides in rows:
        total += 1
        current[tuple(sorted((observed or {}).items()))].append(name)
        wanted = effective_gates(cluster.desired_gates, overrides)
        if wanted is not None:
            desired[tuple(sorted(wanted.items()))].append(name)
    check = validate(kubelet_version, {}, catalog)  # the version, judged once (raises when unreadable)
    return {
        "cluster": cluster.name,
        "kubelet_version": kubelet_version,
        "kubelet_minor": check.kubelet_minor,
        "judged_as": check.judged_as,
        "nodes": total,
        "warnings": [w.as_dict() for w in check.warnings],
        "current": _judge(current, kubelet_version, catalog),
        "desired": _judge(desired, kubelet_version, catalog),
    }
