"""Readings of nodes: what an audit, a rollout operation or a sync read on a node becomes the
node's observed state, its decision columns and its drift, plus one ``NodeObservation`` row.

A reading never writes the desired state. Audits apply readings in batches
(:func:`apply_reading` in memory, then bulk writes); operations record one at a time
(:func:`record_reading`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from drivers.base import DriverError, ObservedFacts
from drivers.dropin import MANAGED_FLAGS, split_gates

from .access import UNREACHABLE_CODES
from .decisions import DECISION_COLUMNS, decision_columns, expected_mode
from .drift import detect_drift
from .models import Node, NodeObservation, ObservedVia

# The node columns a reading writes.
READING_FIELDS = (
    "kubelet_version",
    "runtime_version",
    "docker_api_version",
    "kubelet_flags",
    "observed_gates",
    "pause_image",
    "observed_pid_namespace",
    "observed_at",
    "observed_via",
    "reachable",
    "ready",
    "audit_error",
    "audit_error_code",
    "drift",
    "drift_details",
    *DECISION_COLUMNS,
)


@dataclass
class Reading:
    """What one read of a node gave: facts, or the error that stopped it."""

    node: Node
    facts: ObservedFacts | None = None
    error: DriverError | None = None
    duration_ms: int = 0


def running_gates(config_gates: Mapping[str, bool], kubelet_flags: Mapping[str, str]) -> dict[str, bool]:
    """The gates a kubelet runs with: its KubeletConfiguration's, under its command line's."""
    _, flag_gates = split_gates(kubelet_flags)
    return {**config_gates, **flag_gates}


def refresh_drift(node: Node) -> None:
    """Recompute the node's drift (in memory) from its observed facts and desired state."""
    if node.observed_via in ("", ObservedVia.INVENTORY) and node.observed_pid_namespace == "unknown":
        node.drift, node.drift_details = False, []  # nothing was read from the node itself yet
        return
    desired = node.desired()
    node.drift_details = detect_drift(
        desired=desired,
        observed_flags=node.kubelet_flags or {},
        observed_gates=node.observed_gates or {},
        observed_mode=node.observed_pid_namespace,
        expected_mode=expected_mode(node.facts(), desired, node.cluster.plan),
    )
    node.drift = bool(node.drift_details)


def apply_reading(reading: Reading, *, via: str, now: datetime) -> NodeObservation:
    """Update the node in memory from one reading and build (unsaved) its observation."""
    node = reading.node
    if reading.facts is not None:
        observed = reading.facts.as_dict()
        others = {k: v for k, v in (node.kubelet_flags or {}).items() if k not in MANAGED_FLAGS}
        node.kubelet_version = observed["kubelet_version"] or node.kubelet_version
        node.runtime_version = observed["runtime_version"] or node.runtime_version
        node.docker_api_version = observed["docker_api_version"] or node.docker_api_version
        node.kubelet_flags = {**others, **observed["kubelet_flags"]}
        node.observed_gates = running_gates(observed.get("config_gates") or {}, node.kubelet_flags)
        if reading.facts.kubelet_status:
            node.ready = reading.facts.kubelet_status == "running"
        node.pause_image = observed["pause_image"] or node.pause_image
        node.observed_pid_namespace = observed["observed_pid_namespace"]
        node.reachable = True
        node.audit_error = node.audit_error_code = ""
        node.observed_at, node.observed_via = now, via
        for column, value in decision_columns(node.facts(), node.cluster.plan).items():
            setattr(node, column, value)
        refresh_drift(node)
    else:
        error = reading.error
        observed = dict(error.facts)
        node.reachable = error.code not in UNREACHABLE_CODES
        node.audit_error = error.message[:2000]
        node.audit_error_code = error.code
        node.observed_pid_namespace = "unknown"
        if error.facts.get("runtime_version"):
            node.runtime_version = error.facts["runtime_version"]
            node.docker_api_version = error.facts.get("docker_api_version", "")
            node.observed_at, node.observed_via = now, via
            for column, value in decision_columns(node.facts(), node.cluster.plan).items():
                setattr(node, column, value)
        # What is not seen is not known to be fixed: the last drift found stays until a reading.
    return NodeObservation(
        node=node,
        source=via,
        observed_at=now,
        reachable=bool(node.reachable),
        error_code=reading.error.code if reading.error else "",
        error=reading.error.message[:2000] if reading.error else "",
        facts=observed,
        observed_pid_namespace=node.observed_pid_namespace,
        drift=node.drift,
        drift_details=node.drift_details,
        duration_ms=reading.duration_ms,
    )


def record_reading(reading: Reading, *, via: str, extra_fields: tuple[str, ...] = ()) -> NodeObservation:
    """Record one reading now: the node's observed columns and one observation row."""
    observation = apply_reading(reading, via=via, now=timezone.now())
    with transaction.atomic():
        observation.save()
        reading.node.save(update_fields=[*READING_FIELDS, *extra_fields])
    return observation
