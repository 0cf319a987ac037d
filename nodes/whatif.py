"""What-if: the decisions a cluster's nodes would get after a hypothetical change (kubelet upgrade,
Docker upgrade, another plan). Computed from the inventory, never written.

``hypothetical`` and ``compare`` are pure; ``whatif`` counts the cluster's nodes by their facts in
SQL and decides each distinct set once, so its decisions cost what the distinct facts cost, not
what the nodes do; listing the first nodes of each category reads nodes only until the lists fill.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count

from gates.plans import PLANS
from gates.policy import SHARED, Decision
from gates.versions import VersionError, parse_docker_version, parse_kube_version

from .decisions import facts_of, node_decision
from .models import Cluster, Node
from .validation import FACT_FIELDS

# Nodes listed per category (counts are always over every node).
LISTED = 200


class WhatIfError(ValueError):
    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name


@dataclass(frozen=True)
class Change:
    """A hypothetical change. Versions are upgrades: nodes already at or above them keep theirs."""

    kubelet_version: str = ""
    docker_version: str = ""
    plan: str = ""

    @classmethod
    def parse(cls, values: dict[str, Any]) -> Change:
        kubelet = str(values.get("kubelet_version") or "").strip()
        docker = str(values.get("docker_version") or "").strip()
        plan = str(values.get("plan") or "").strip()
        try:
            if kubelet:
                parse_kube_version(kubelet)
        except VersionError as exc:
            raise WhatIfError("kubelet_version", str(exc)) from None
        try:
            if docker:
                parse_docker_version(docker)
        except VersionError as exc:
            raise WhatIfError("docker_version", str(exc)) from None
        if plan and plan not in PLANS:
            raise WhatIfError("plan", f"unknown plan {plan[:40]!r}; one of {', '.join(sorted(PLANS))}")
        if not (kubelet or docker or plan):
            raise WhatIfError("change", "choose a kubelet version, a Docker version or a plan")
        return cls(kubelet, docker, plan)

    def describe(self, cluster_plan: str) -> str:
        parts = []
        if self.kubelet_version:
            parts.append(f"kubelets upgraded to {self.kubelet_version}")
        if self.docker_version:
            parts.append(f"Docker upgraded to {self.docker_version}")
        if self.plan and self.plan != cluster_plan:
            parts.append(f"the {self.plan} plan instead of {cluster_plan}")
        return ", ".join(parts) or "no change"


def _upgraded(current: str, target: str, parse) -> str:
    # A version nobody has read stays unknown: an upgrade of it would be a guess.
    if not target or not current:
        return current
    try:
        return target if parse(current) < parse(target) else current
    except VersionError:
        return target  # an unreadable version is replaced by the one the operator names


def hypothetical(facts: dict[str, Any], change: Change) -> dict[str, Any]:
    """The node's facts after the change (Docker versions only change on Docker nodes)."""
    after = dict(facts)
    after["kubelet_version"] = _upgraded(facts.get("kubelet_version", ""), change.kubelet_version, parse_kube_version)
    if (facts.get("container_runtime") or "docker") == "docker":
        after["runtime_version"] = _upgraded(
            facts.get("runtime_version", ""), change.docker_version, parse_docker_version
        )
    return after


@dataclass
class Outcome:
    """One node's decision before and after."""

    mode_before: str
    mode_after: str
    mechanism_before: str
    mechanism_after: str
    rollback_before: str
    rollback_after: str
    loses_rollback: bool
    blocker_before: str
    blocker_after: str
    blocker_detail: str


def _decisions(facts: dict[str, Any], plan: str) -> tuple[Decision | None, Decision | None]:
    current, _ = node_decision(facts, plan)
    to_shared, _ = node_decision(facts, plan, SHARED)
    return current, to_shared


def compare(facts: dict[str, Any], cluster_plan: str, change: Change) -> Outcome:
    """Before and after for one node's facts (pure)."""
    now, now_shared = _decisions(facts, cluster_plan)
    then, then_shared = _decisions(hypothetical(facts, change), change.plan or cluster_plan)
    blocker_after = then_shared.blockers[0] if then_shared and then_shared.blockers else None
    return Outcome(
        mode_before=now.pid_namespace if now else "unknown",
        mode_after=then.pid_namespace if then else "unknown",
        mechanism_before=now.mechanism if now else "",
        mechanism_after=then.mechanism if then else "",
        rollback_before=now.rollback.method if now else "",
        rollback_after=then.rollback.method if then else "",
        loses_rollback=bool(now and then and now.rollback.automatic and not then.rollback.automatic),
        blocker_before=now_shared.blockers[0].code if now_shared and now_shared.blockers else "",
        blocker_after=blocker_after.code if blocker_after else "",
        blocker_detail=blocker_after.message if blocker_after else "",
    )


@dataclass
class WhatIf:
    cluster: str
    plan: str
    change: str
    total: int = 0
    mode_changes: dict[str, int] = field(default_factory=dict)
    changed: list[dict[str, Any]] = field(default_factory=list)
    changed_count: int = 0
    lose_rollback: list[dict[str, Any]] = field(default_factory=list)
    lose_rollback_count: int = 0
    blocked: list[dict[str, Any]] = field(default_factory=list)
    blocked_count: int = 0
    newly_blocked_count: int = 0
    undecided_count: int = 0


CATEGORIES = ("changed", "lose_rollback", "blocked")


def whatif(cluster: Cluster, change: Change) -> WhatIf:
    """Which of the cluster's nodes would change mode, lose automatic rollback, or be blocked from
    shared after ``change``. The nodes are counted by their facts in SQL and each distinct set of
    facts is decided once; the nodes listed per category (the first ``LISTED`` by name) come from
    a walk over the nodes in name order that stops as soon as every list is full."""
    result = WhatIf(cluster=cluster.name, plan=change.plan or cluster.plan, change=change.describe(cluster.plan))
    nodes = Node.objects.filter(cluster=cluster)
    decided: dict[tuple, tuple[Outcome, tuple[str, ...]]] = {}
    for group in nodes.order_by().values(*FACT_FIELDS).annotate(n=Count("id")):
        n = group.pop("n")
        outcome = compare(facts_of(group), cluster.plan, change)
        result.total += n
        if outcome.mode_before == "unknown" and outcome.mode_after == "unknown":
            result.undecided_count += n
            continue
        categories = []
        if outcome.mode_before != outcome.mode_after:
            result.changed_count += n
            label = f"{outcome.mode_before} → {outcome.mode_after}"
            result.mode_changes[label] = result.mode_changes.get(label, 0) + n
            categories.append("changed")
        if outcome.loses_rollback:
            result.lose_rollback_count += n
            categories.append("lose_rollback")
        if outcome.blocker_after:
            result.blocked_count += n
            result.newly_blocked_count += n if not outcome.blocker_before else 0
            categories.append("blocked")
        if categories:
            decided[_key([group[name] for name in FACT_FIELDS])] = (outcome, tuple(categories))
    wanted = {category: min(LISTED, getattr(result, f"{category}_count")) for category in CATEGORIES}
    if any(wanted.values()):
        rows = nodes.order_by("name").values_list("id", "name", *FACT_FIELDS)
        for node_id, name, *values in rows.iterator(chunk_size=2000):
            found = decided.get(_key(values))
            if found is None:
                continue
            outcome, categories = found
            for category in categories:
                listed = getattr(result, category)
                if len(listed) < wanted[category]:
                    listed.append({"id": node_id, "name": name, "outcome": outcome})
            if all(len(getattr(result, category)) >= wanted[category] for category in CATEGORIES):
                break
    return result


def _key(values: list[Any]) -> tuple:
    """A hashable key of one node's facts, in ``FACT_FIELDS`` order (flags as sorted JSON)."""
    return tuple(json.dumps(value, sort_keys=True) if isinstance(value, dict) else value for value in values)
