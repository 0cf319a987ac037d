"""Drift: where a reading of a node differs from what the service wants of it. Pure functions.

Drift is measured against the *desired* state only: a managed kubelet flag or feature gate whose
observed value is not the desired one, or pods running in another mode than the desired settings
give on this node (or in mixed modes). A version that changed since the last reading is history,
not drift; a node the service has no intent for yet (no desired state) drifts only by its pods.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drivers.dropin import Desired, split_gates

NODE_MODES = ("shared", "isolated")
MIXED = "mixed"


def _differences(field: str, desired: Mapping[str, Any], observed: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {"field": field, "key": key, "desired": desired.get(key), "observed": observed.get(key)}
        for key in sorted(set(desired) | set(observed))
        if desired.get(key) != observed.get(key)
    ]


def detect_drift(
    *,
    desired: Desired | None,
    observed_flags: Mapping[str, str],
    observed_mode: str,
    expected_mode: str,
    observed_gates: Mapping[str, bool] | None = None,
) -> list[dict[str, Any]]:
    """The differences between what the service wants of a node and what was read on it.

    ``expected_mode`` is the mode the decision engine gives for the observed facts with the desired
    settings in place of the managed ones (see :func:`nodes.decisions.expected_mode`).
    ``observed_gates`` are the gates the kubelet runs with (its configuration's under the drop-in's);
    a gate the service does not want matters only in the drop-in it writes.
    """
    drift: list[dict[str, Any]] = []
    if desired is not None:
        flags, dropin_gates = split_gates(observed_flags)
        if desired.flags is not None:
            drift += _differences("kubelet_flags", desired.flags, flags)
        if desired.gates is not None:
            running = {**(observed_gates or {}), **dropin_gates}
            wanted = desired.gates
            keys = set(wanted) | set(dropin_gates)
            drift += _differences("feature_gates", wanted, {k: running[k] for k in keys if k in running})
    if observed_mode == MIXED or (
        observed_mode in NODE_MODES and expected_mode in NODE_MODES and observed_mode != expected_mode
    ):
        drift.append({"field": "observed_pid_namespace", "desired": expected_mode, "observed": observed_mode})
    return drift


def describe(entry: Mapping[str, Any]) -> str:
    """One drift entry in words."""
    field = entry.get("field")
    if field == "observed_pid_namespace":
        if entry.get("observed") == MIXED:
            return "pods run in mixed PID-namespace modes (some were not recreated since the kubelet changed)"
        return f"pods are {entry.get('observed')}, the desired settings give {entry.get('desired')}"
    what = "flag --" if field == "kubelet_flags" else "feature gate "
    desired, observed = entry.get("desired"), entry.get("observed")
    return (
        f"{what}{entry.get('key')}: wanted {'unset' if desired is None else desired}, "
        f"found {'unset' if observed is None else observed}"
    )
