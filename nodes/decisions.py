"""How a node's facts become its decision, and the decision columns stored for SQL.

The decision itself is computed on demand (it is pure and cheap); a few of its results are kept
on the node so that lists filter and summaries aggregate in SQL. Services call
:func:`decision_columns` whenever facts or the cluster's plan change.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from drivers.dropin import MANAGED_FLAGS, Desired
from gates.facts import FactsError, parse_facts
from gates.plans import decide
from gates.policy import INTENT_DEFAULT, ISOLATED, SHARED, Decision
from gates.versions import VersionError, parse_docker_version, parse_kube_version

UNKNOWN = "unknown"


def facts_of(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "kubelet_version": values.get("kubelet_version") or "",
        "container_runtime": values.get("container_runtime") or "docker",
        "runtime_version": values.get("runtime_version") or "",
        "kubelet_flags": values.get("kubelet_flags") or {},
        "pause_image": values.get("pause_image") or "",
    }


def node_decision(values: Mapping[str, Any], plan: str, intent: str = INTENT_DEFAULT) -> tuple[Decision | None, str]:
    """The decision for a node's facts, or (None, why it cannot be decided)."""
    facts = facts_of(values)
    if not facts["kubelet_version"]:
        return None, "the kubelet version is not known yet"
    try:
        return decide(parse_facts(facts), plan, intent), ""
    except FactsError as exc:
        return None, str(exc)


def with_desired(values: Mapping[str, Any], desired: Desired | None) -> dict[str, Any]:
    """The facts with the desired managed settings in place of the observed ones (the flags that are
    not this service's to manage are kept)."""
    facts = facts_of(values)
    if desired is None:
        return facts
    others = {k: v for k, v in facts["kubelet_flags"].items() if k not in MANAGED_FLAGS}
    return {**facts, "kubelet_flags": {**others, **desired.kubelet_flags(facts["kubelet_flags"])}}


def expected_mode(values: Mapping[str, Any], desired: Desired | None, plan: str) -> str:
    """The mode the node's pods should run in: the decision for its observed facts with the desired
    settings applied; ``unknown`` when it cannot be decided."""
    decision, _ = node_decision(with_desired(values, desired), plan)
    return decision.pid_namespace if decision is not None else UNKNOWN


def decision_columns(values: Mapping[str, Any], plan: str) -> dict[str, str]:
    """The stored decision columns for a node's facts under ``plan``."""
    facts = facts_of(values)
    return dict(
        _columns_cached(
            facts["kubelet_version"],
            facts["container_runtime"],
            facts["runtime_version"],
            json.dumps(facts["kubelet_flags"], sort_keys=True),
            facts["pause_image"],
            plan,
        )
    )


def _readable(version: str, parse):
    """The parsed version, or None when it is empty or cannot be read."""
    try:
        return parse(version) if version else None
    except VersionError:
        return None


def runtime_line(runtime: str, version: str) -> str:
    """The runtime's release line for the overview's matrix: ``1.12`` or ``17.03`` for Docker (as
    Docker writes its lines), the runtime's name for the others; empty when not known."""
    if runtime and runtime != "docker":
        return runtime
    parsed = _readable(version, parse_docker_version)
    if parsed is None:
        return ""
    return f"{parsed.major}.{parsed.minor:02d}" if parsed.major >= 17 else parsed.line_label


def version_order(version: str, parse) -> str:
    """A text key that sorts versions in version order (``v1.6`` before ``v1.10``, a pre-release
    before its release); empty when the version cannot be read."""
    parsed = _readable(version, parse)
    if parsed is None:
        return ""
    return f"{parsed.major:05d}.{parsed.minor:05d}.{parsed.patch:05d}.{0 if parsed.is_prerelease else 1}"


@lru_cache(maxsize=65536)
def _columns_cached(kubelet, runtime, runtime_version, flags_json, pause, plan) -> tuple[tuple[str, str], ...]:
    values = {
        "kubelet_version": kubelet,
        "container_runtime": runtime,
        "runtime_version": runtime_version,
        "kubelet_flags": json.loads(flags_json),
        "pause_image": pause,
    }
    parsed_kubelet = _readable(kubelet, parse_kube_version)
    minor = parsed_kubelet.line_label if parsed_kubelet else ""
    current, error = node_decision(values, plan)
    line = runtime_line(runtime, runtime_version)
    orders = {
        "kubelet_order": version_order(kubelet, parse_kube_version),
        "runtime_order": version_order(runtime_version, parse_docker_version) if runtime == "docker" else "",
    }
    if current is None:
        columns = {
            "kubelet_minor": minor,
            "runtime_line": line,
            **orders,
            "pid_namespace": UNKNOWN,
            "mechanism": "",
            "rollback_method": "",
            "shared_blocker": "",
            "isolated_blocker": "",
            "decision_error": error[:500],
        }
    else:
        to_shared, _ = node_decision(values, plan, SHARED)
        to_isolated, _ = node_decision(values, plan, ISOLATED)
        columns = {
            "kubelet_minor": minor,
            "runtime_line": line,
            **orders,
            "pid_namespace": current.pid_namespace,
            "mechanism": current.mechanism,
            "rollback_method": current.rollback.method,
            "shared_blocker": to_shared.blockers[0].code if to_shared.blockers else "",
            "isolated_blocker": to_isolated.blockers[0].code if to_isolated.blockers else "",
            "decision_error": "",
        }
    return tuple(columns.items())


DECISION_COLUMNS = (
    "kubelet_minor",
    "runtime_line",
    "kubelet_order",
    "runtime_order",
    "pid_namespace",
    "mechanism",
    "rollback_method",
    "shared_blocker",
    "isolated_blocker",
    "decision_error",
)
