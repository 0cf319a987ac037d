"""Validation of the raw facts that feed the decision engine.

Pure module: no Django import. Every check here returns a message naming the problem, and
:func:`parse_facts` collects them per field, so the API, the importer and the models all report
bad input the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .policy import (
    DOCKER,
    FLAG_DISABLE_SHARED_PID,
    FLAG_ENABLE_CRI,
    FLAG_EXPERIMENTAL_CRI,
    FLAG_FEATURE_GATES,
    RUNTIMES,
    NodeFacts,
)
from .versions import VersionError, parse_docker_version, parse_kube_version

MAX_FLAGS = 100
MAX_FLAG_VALUE = 4096
MAX_LABELS = 100
MAX_PAUSE_IMAGE = 255

BOOL_FLAGS = (FLAG_ENABLE_CRI, FLAG_EXPERIMENTAL_CRI, FLAG_DISABLE_SHARED_PID)

_FLAG_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$", re.ASCII)
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$", re.ASCII)
_LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$", re.ASCII)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$", re.ASCII)
_GATE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,99}$", re.ASCII)
_IMAGE_REF = re.compile(r"^[a-z0-9][a-z0-9._/:@+-]*$", re.ASCII | re.IGNORECASE)

# Go's strconv.ParseBool, which the kubelet uses for boolean flags.
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


ECHO = 80


def echo(value: Any, limit: int = ECHO) -> str:
    """A value as an error message may repeat it: its repr, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class FactsError(ValueError):
    """Invalid facts; ``errors`` maps each bad field to its messages."""

    def __init__(self, errors: Mapping[str, list[str]]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in self.errors.items()))


def parse_bool(value: str) -> bool:
    """Read a boolean flag value as the kubelet does."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{echo(value)} is not a boolean (use true or false)")


def parse_feature_gates(value: str) -> dict[str, bool]:
    """Read ``--feature-gates`` (``A=true,B=false``) into a map."""
    gates: dict[str, bool] = {}
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not _GATE_NAME.match(name):
            raise ValueError(f"feature gate {echo(item)} must look like Name=true")
        try:
            gates[name] = parse_bool(raw.strip())
        except ValueError as exc:
            raise ValueError(f"feature gate {name}: {exc}") from None
    return gates


MAX_GATES = 200


def normalize_gate_map(value: Any, allow_null: bool = False) -> dict[str, bool]:
    """Validate feature gates given as a map: ``{"Name": true}``; values are booleans or the strings
    ``"true"``/``"false"`` (or null, when ``allow_null``). Returns the map with boolean values."""
    if not isinstance(value, Mapping):
        raise ValueError("must be an object mapping gate names to true or false")
    if len(value) > MAX_GATES:
        raise ValueError(f"at most {MAX_GATES} feature gates")
    gates: dict[str, bool] = {}
    for name, raw in value.items():
        if not isinstance(name, str) or not _GATE_NAME.match(name):
            raise ValueError(
                f"{echo(str(name))} is not a feature gate name (letters and digits, starting with a letter)"
            )
        if isinstance(raw, bool) or (raw is None and allow_null):
            gates[name] = raw
        elif isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
            gates[name] = raw.strip().lower() == "true"
        else:
            raise ValueError(f"feature gate {name}: {echo(raw, 40)} is not true or false")
    return gates


def format_feature_gates(gates: Mapping[str, bool]) -> str:
    return ",".join(f"{name}={'true' if on else 'false'}" for name, on in sorted(gates.items()))


def _check_text(value: str, limit: int) -> str | None:
    if len(value) > limit:
        return f"at most {limit} characters"
    if "\x00" in value:
        return "must not contain NUL characters"
    return None


def normalize_flags(value: Any) -> dict[str, str]:
    """Validate kubelet flags: a flat map of flag name (leading dashes dropped) to string.

    Booleans and numbers are accepted and written as the kubelet reads them. The managed boolean
    flags and ``feature-gates`` must hold values the kubelet accepts.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError("must be an object mapping flag names to values")
    if len(value) > MAX_FLAGS:
        raise ValueError(f"at most {MAX_FLAGS} flags")
    flags: dict[str, str] = {}
    for raw_name, raw_value in value.items():
        if not isinstance(raw_name, str):
            raise ValueError("flag names must be strings")
        name = raw_name.lstrip("-")
        if not _FLAG_NAME.match(name):
            raise ValueError(f"{echo(raw_name)} is not a kubelet flag name (lowercase letters, digits and dashes)")
        if isinstance(raw_value, bool):
            text = "true" if raw_value else "false"
        elif isinstance(raw_value, int):
            text = str(raw_value)
        elif isinstance(raw_value, str):
            text = raw_value
        else:
            raise ValueError(f"flag {name}: value must be a string, not {type(raw_value).__name__}")
        problem = _check_text(text, MAX_FLAG_VALUE)
        if problem:
            raise ValueError(f"flag {name}: {problem}")
        if name in flags:
            raise ValueError(f"flag {name} is given twice")
        if name in BOOL_FLAGS:
            try:
                parse_bool(text)
            except ValueError as exc:
                raise ValueError(f"flag {name}: {exc}") from None
        if name == FLAG_FEATURE_GATES:
            parse_feature_gates(text)
        flags[name] = text
    return flags


def normalize_labels(value: Any) -> dict[str, str]:
    """Validate labels: a flat map of Kubernetes label keys to label values."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError("must be an object mapping label keys to string values")
    if len(value) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels")
    for key, label_value in value.items():
        if not isinstance(key, str):
            raise ValueError("label keys must be strings")
        if not isinstance(label_value, str):
            raise ValueError(f"label {echo(key)}: value must be a string, not {type(label_value).__name__}")
        prefix, slash, name = key.rpartition("/")
        if slash and (not prefix or len(prefix) > 253 or not _LABEL_PREFIX.match(prefix)):
            raise ValueError(f"label key {echo(key)}: the prefix must be a DNS subdomain")
        if not _LABEL_NAME.match(name):
            raise ValueError(f"label key {echo(key)}: name must be 1-63 letters, digits, '-', '_' or '.'")
        if not _LABEL_VALUE.match(label_value):
            raise ValueError(f"label {echo(key)}: value must be at most 63 letters, digits, '-', '_' or '.'")
    return dict(value)


def normalize_runtime(value: Any) -> str:
    if not isinstance(value, str) or value not in RUNTIMES:
        raise ValueError(f"{echo(value)} is not a known container runtime (one of {', '.join(RUNTIMES)})")
    return value


def normalize_pause_image(value: Any) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise ValueError("must be an image reference string")
    value = value.strip()
    if len(value) > MAX_PAUSE_IMAGE or not _IMAGE_REF.match(value):
        raise ValueError(f"{echo(value)} is not an image reference (e.g. k8s.gcr.io/pause:3.1)")
    return value


def parse_facts(raw: Mapping[str, Any]) -> NodeFacts:
    """Build :class:`NodeFacts` from plain values, or raise :class:`FactsError` naming each field."""
    errors: dict[str, list[str]] = {}

    def check(field_name, fn, value):
        try:
            return fn(value)
        except ValueError as exc:
            errors.setdefault(field_name, []).append(str(exc))
            return None

    runtime = check("container_runtime", normalize_runtime, raw.get("container_runtime") or DOCKER)
    kubelet = check("kubelet_version", parse_kube_version_checked, raw.get("kubelet_version"))
    runtime_version = None
    raw_runtime_version = raw.get("runtime_version")
    if runtime == DOCKER:
        if raw_runtime_version in (None, ""):
            errors.setdefault("runtime_version", []).append("the Docker version is required when the runtime is docker")
        else:
            runtime_version = check("runtime_version", parse_docker_version_checked, raw_runtime_version)
    elif raw_runtime_version not in (None, "") and not isinstance(raw_runtime_version, str):
        errors.setdefault("runtime_version", []).append("must be a string")
    flags = check("kubelet_flags", normalize_flags, raw.get("kubelet_flags"))
    pause = check("pause_image", normalize_pause_image, raw.get("pause_image"))
    if errors:
        raise FactsError(errors)
    return NodeFacts(
        kubelet_version=kubelet,
        container_runtime=runtime,
        runtime_version=runtime_version,
        kubelet_flags=MappingProxyType(flags),
        pause_image=pause,
    )


def parse_kube_version_checked(value: Any):
    if not isinstance(value, str):
        raise VersionError("a Kubernetes version is required" if value in (None, "") else "must be a string")
    return parse_kube_version(value)


def parse_docker_version_checked(value: Any):
    if not isinstance(value, str):
        raise VersionError("must be a string")
    return parse_docker_version(value)
