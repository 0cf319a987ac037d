"""What a rollout would do to one node, decided from the node's observed facts: the preview and the
operation's apply step ask the same question here, so they never disagree.

A rollout's change is either a PID-namespace mode (``intent``: shared or isolated) or a set of
feature gates (``{Name: true|false|null}``, null taking the gate out of the drop-in). Either way the
result is the managed flags before and after, or why the node is skipped; gates the node's kubelet
would refuse to start with block the node, with the problem's code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from drivers.base import ErrorCode
from drivers.dropin import join_gates, managed_subset, split_gates
from gates.catalog import Catalog
from gates.gatecheck import GateInputError, validate
from nodes.access import UNREACHABLE_CODES
from nodes.decisions import node_decision
from nodes.models import Node

PID = "pid"
GATES = "gates"
KINDS = (PID, GATES)


@dataclass(frozen=True)
class Change:
    kind: str = PID
    intent: str = ""
    gates: dict[str, bool | None] = field(default_factory=dict)

    @property
    def expected_mode(self) -> str:
        """The mode verification waits for (a gate change waits for the kubelet instead)."""
        if self.kind != PID:
            return ""
        return "shared" if self.intent == "shared" else "isolated"

    def label(self) -> str:
        from .models import Rollout

        return Rollout(kind=self.kind, intent=self.intent, gate_changes=self.gates).change_label


def change_of(rollout) -> Change:
    return Change(kind=rollout.kind, intent=rollout.intent, gates=dict(rollout.gate_changes or {}))


@dataclass
class NodePlan:
    """One node's part in a rollout: skipped (``code``, ``message``), or its flags before and after."""

    code: str = ""
    message: str = ""
    before: dict[str, str] = field(default_factory=dict)
    target: dict[str, str] = field(default_factory=dict)
    decision: Any = None
    warnings: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> bool:
        return bool(self.code)

    def flag_changes(self) -> dict[str, dict[str, str | None]]:
        keys = sorted(set(self.before) | set(self.target))
        return {
            k: {"from": self.before.get(k), "to": self.target.get(k)}
            for k in keys
            if self.before.get(k) != self.target.get(k)
        }


def reachability(node: Node) -> NodePlan | None:
    """Why the service cannot change this node at all, from what it knows of it; None if it can."""
    if not node.managed:
        return NodePlan("unmanaged", "the node is not managed by this service")
    if not node.docker_endpoint:
        return NodePlan("no-endpoint", "the node has no Docker endpoint")
    if node.audit_error_code in UNREACHABLE_CODES:
        return NodePlan("unreachable", f"the last reading could not reach it: {node.audit_error}")
    if node.audit_error_code == ErrorCode.ENGINE_TOO_OLD:
        return NodePlan("engine-too-old", node.audit_error)
    return None


def gate_problem(node: Node, flags: dict[str, str], catalog: Catalog) -> NodePlan | None:
    """The node's kubelet would not start with these managed flags (and its configuration's gates)."""
    _, dropin_gates = split_gates(flags)
    if not dropin_gates:
        return None
    running = {**(node.observed_gates or {}), **dropin_gates}
    try:
        check = validate(node.kubelet_version, running, catalog)
    except GateInputError as exc:
        return NodePlan("unknown-facts", str(exc))
    if check.problems:
        first = check.problems[0]
        return NodePlan(first.code, first.message)
    return None


def plan_node(node: Node, change: Change, catalog: Catalog) -> NodePlan:
    """What ``change`` means for ``node``, from its observed facts."""
    blocked = reachability(node)
    if blocked is not None:
        return blocked
    before = managed_subset(node.kubelet_flags or {})
    if change.kind == GATES:
        return _plan_gates(node, change, before, catalog)
    return _plan_pid(node, change, before, catalog)


def _plan_pid(node: Node, change: Change, before: dict[str, str], catalog: Catalog) -> NodePlan:
    decision, error = node_decision(node.facts(), node.cluster.plan, change.intent)
    if decision is None:
        return NodePlan("unknown-facts", error)
    if decision.blockers:
        blocker = decision.blockers[0]
        return NodePlan(blocker.code, blocker.message, decision=decision)
    expected = change.expected_mode
    if not decision.changes_required and node.observed_pid_namespace in (expected, "unknown"):
        return NodePlan(f"already-{change.intent}", f"the node is already {change.intent}", decision=decision)
    target = managed_subset(dict(decision.kubelet_flags))
    refused = gate_problem(node, target, catalog)
    if refused is not None:
        refused.decision = decision
        return refused
    return NodePlan(before=before, target=target, decision=decision, warnings=[w.code for w in decision.warnings])


def _plan_gates(node: Node, change: Change, before: dict[str, str], catalog: Catalog) -> NodePlan:
    flags, gates = split_gates(before)
    for name, value in change.gates.items():
        if value is None:
            gates.pop(name, None)
        else:
            gates[name] = value
    target = join_gates(flags, gates)
    if target == before:
        return NodePlan("already-set", "the node's drop-in already has these gates")
    running = {**(node.observed_gates or {}), **gates}
    try:
        check = validate(node.kubelet_version, running, catalog)
    except GateInputError as exc:
        return NodePlan("unknown-facts", str(exc))
    if check.problems:
        first = check.problems[0]
        return NodePlan(first.code, first.message)
    return NodePlan(before=before, target=target, warnings=[w.code for w in check.warnings])
