"""Validation of a kubelet's feature gates against its version: would it start, and what is worth a
warning. Pure module: no Django import.

A kubelet refuses to start when ``--feature-gates`` (or its KubeletConfiguration ``featureGates``)
names a gate it does not know (``unrecognized feature gate: X``) or sets a gate locked to its default
against it (``cannot set feature gate X to false, feature is locked to true``); systemd then restarts
it in a loop. The codes are part of the API contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .catalog import Catalog, Minor, minor_label
from .facts import echo
from .versions import VersionError, parse_kube_version

# Problems: the kubelet would not start.
GATE_UNKNOWN = "GATE_UNKNOWN"
GATE_REMOVED = "GATE_REMOVED"
GATE_NOT_YET = "GATE_NOT_YET"
GATE_LOCKED = "GATE_LOCKED"
PROBLEMS = (GATE_UNKNOWN, GATE_REMOVED, GATE_NOT_YET, GATE_LOCKED)
# Warnings.
GATE_ALPHA = "GATE_ALPHA"
GATE_DEPRECATED = "GATE_DEPRECATED"
GATE_GA = "GATE_GA"
CATALOG_OLDER_THAN_KUBELET = "CATALOG_OLDER_THAN_KUBELET"
WARNINGS = (GATE_ALPHA, GATE_DEPRECATED, GATE_GA, CATALOG_OLDER_THAN_KUBELET)


class GateInputError(ValueError):
    """Input that cannot be judged; ``field`` names it (``kubelet_version`` or ``feature_gates``)."""

    def __init__(self, field_name: str, message: str):
        self.field = field_name
        super().__init__(message)


@dataclass(frozen=True)
class Finding:
    gate: str
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"gate": self.gate, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class GateReport:
    """One gate as a kubelet of that minor sees it."""

    name: str
    value: bool
    known: bool
    recognised: bool
    stage: str | None
    default: bool | None
    locked: bool
    first_release: str | None
    removed_in: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class GateCheck:
    kubelet_minor: str
    judged_as: str
    problems: tuple[Finding, ...] = ()
    warnings: tuple[Finding, ...] = ()
    gates: tuple[GateReport, ...] = field(default=())

    @property
    def valid(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "kubelet_minor": self.kubelet_minor,
            "judged_as": self.judged_as,
            "valid": self.valid,
            "problems": [f.as_dict() for f in self.problems],
            "warnings": [f.as_dict() for f in self.warnings],
            "gates": [g.as_dict() for g in self.gates],
        }


def kubelet_minor(kubelet_version: Any) -> Minor:
    """The release line of a kubelet version (``v1.19.0-beta.2`` is 1.19), or GateInputError."""
    if not isinstance(kubelet_version, str) or not kubelet_version.strip():
        raise GateInputError("kubelet_version", "a kubelet version such as v1.19.0 is required")
    try:
        parsed = parse_kube_version(kubelet_version)
    except VersionError as exc:
        raise GateInputError("kubelet_version", str(exc)) from None
    return parsed.major, parsed.minor


def gate_values(feature_gates: Any) -> dict[str, bool]:
    """``{Name: true|false|"true"|"false"}`` as booleans, or GateInputError naming the gate."""
    if not isinstance(feature_gates, Mapping):
        raise GateInputError("feature_gates", "must be an object mapping gate names to true or false")
    values: dict[str, bool] = {}
    for name, raw in feature_gates.items():
        if not isinstance(name, str) or not name or len(name) > 100 or not name.isascii() or not name.isalnum():
            raise GateInputError("feature_gates", f"{echo(name)} is not a feature gate name")
        if isinstance(raw, bool):
            values[name] = raw
        elif isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
            values[name] = raw.strip().lower() == "true"
        else:
            raise GateInputError("feature_gates", f"{name}: {echo(raw, 40)} is not true or false")
    return values


def validate(kubelet_version: Any, feature_gates: Any, catalog: Catalog) -> GateCheck:
    """Judge ``feature_gates`` for a kubelet of ``kubelet_version`` with ``catalog``."""
    actual = kubelet_minor(kubelet_version)
    values = gate_values(feature_gates)
    minor = catalog.judged_minor(actual)
    label = minor_label(minor)
    problems: list[Finding] = []
    warnings: list[Finding] = []
    if actual > catalog.newest:
        warnings.append(
            Finding(
                "",
                CATALOG_OLDER_THAN_KUBELET,
                f"The catalog knows releases up to {minor_label(catalog.newest)}; kubelet "
                f"{minor_label(actual)} is judged as {label}. Load a newer catalog to be sure.",
            )
        )
    reports = []
    for name, value in sorted(values.items()):
        gate = catalog.get(name)
        if gate is None:
            problems.append(
                Finding(name, GATE_UNKNOWN, f"unrecognized feature gate: {name} (no Kubernetes release had it)")
            )
            reports.append(GateReport(name, value, False, False, None, None, False, None, None))
            continue
        state = gate.state_at(minor)
        reports.append(
            GateReport(
                name,
                value,
                True,
                state.recognised,
                state.stage,
                state.default,
                state.locked,
                minor_label(gate.first_release),
                minor_label(gate.removed_in) if gate.removed_in else None,
            )
        )
        if gate.removed_in is not None and minor >= gate.removed_in:
            problems.append(
                Finding(
                    name,
                    GATE_REMOVED,
                    f"unrecognized feature gate: {name} (removed in {minor_label(gate.removed_in)}; "
                    f"kubelet {label} does not start with it)",
                )
            )
            continue
        if minor < gate.first_release:
            problems.append(
                Finding(
                    name,
                    GATE_NOT_YET,
                    f"unrecognized feature gate: {name} (it arrives in {minor_label(gate.first_release)}; "
                    f"kubelet {label} does not start with it)",
                )
            )
            continue
        if state.locked and state.default is not None and value != state.default:
            problems.append(
                Finding(
                    name,
                    GATE_LOCKED,
                    f"cannot set feature gate {name} to {'true' if value else 'false'}, feature is locked to "
                    f"{'true' if state.default else 'false'} (since {minor_label(gate.locked_from)})",
                )
            )
            continue
        if state.stage == "alpha" and value:
            warnings.append(Finding(name, GATE_ALPHA, f"{name} is alpha in {label}: not for production."))
        elif state.stage == "deprecated":
            warnings.append(Finding(name, GATE_DEPRECATED, f"{name} is deprecated in {label}; stop setting it."))
        elif state.stage == "ga":
            removal = f"; it is removed in {minor_label(gate.removed_in)}" if gate.removed_in else ""
            warnings.append(
                Finding(
                    name,
                    GATE_GA,
                    f"{name} is GA in {label}: setting it does nothing{removal}. Drop it from the configuration.",
                )
            )
    return GateCheck(
        kubelet_minor=minor_label(actual),
        judged_as=label,
        problems=tuple(problems),
        warnings=tuple(warnings),
        gates=tuple(reports),
    )
