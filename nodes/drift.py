"""Drift: what an audit saw that the inventory did not expect. Pure function."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drivers.dropin import managed_subset

COMPARED_FACTS = ("kubelet_version", "runtime_version", "pause_image")
NODE_MODES = ("shared", "isolated")


def detect_drift(expected: Mapping[str, Any], observed: Mapping[str, Any], decided_mode: str) -> list[dict[str, Any]]:
    """Differences between the inventory's facts and the observed ones, and pods whose mode is
    not the one the decision engine gives for the observed facts.

    A node the inventory knew nothing about (no kubelet version) has no expectations yet, so
    only its pods' modes are checked.
    """
    drift: list[dict[str, Any]] = []
    known = bool(expected.get("kubelet_version"))
    if known:
        for field in COMPARED_FACTS:
            before, now = expected.get(field) or "", observed.get(field) or ""
            if before and now and before != now:
                drift.append({"field": field, "expected": before, "observed": now})
        before_flags = managed_subset(dict(expected.get("kubelet_flags") or {}))
        now_flags = managed_subset(dict(observed.get("kubelet_flags") or {}))
        if before_flags != now_flags:
            drift.append({"field": "kubelet_flags", "expected": before_flags, "observed": now_flags})
    mode = observed.get("observed_pid_namespace")
    if mode == "mixed" or mode in NODE_MODES and decided_mode in NODE_MODES and mode != decided_mode:
        drift.append({"field": "observed_pid_namespace", "expected": decided_mode, "observed": mode})
    return drift
