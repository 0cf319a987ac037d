"""Validation of inventory fields, shared by the models, the API and the importer.

Each ``normalize_*`` function takes a raw value and returns the value to store, or raises
``ValueError`` with a message fit for a user. :func:`validate_node_row` applies them to a whole
row and collects errors per field, which is what the importer needs at 100,000 rows: one pass,
no serializer overhead.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible

from gates.facts import (
    BOOL_FLAGS,
    echo,
    normalize_flags,
    normalize_gate_map,
    normalize_labels,
    normalize_pause_image,
    normalize_runtime,
    parse_docker_version_checked,
    parse_kube_version_checked,
)

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", re.ASCII)
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$", re.ASCII)
_HOSTNAME = re.compile(
    r"^[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$", re.ASCII
)
_API_VERSION = re.compile(r"^1\.\d{1,3}$", re.ASCII)
_UNIX_PATH = re.compile(r"^/[A-Za-z0-9._/-]{1,200}$", re.ASCII)

NODE_FIELDS = (
    "cluster",
    "name",
    "labels",
    "docker_endpoint",
    "managed",
    "kubelet_version",
    "container_runtime",
    "runtime_version",
    "docker_api_version",
    "kubelet_flags",
    "pause_image",
    "desired_flags",
    "desired_gates",
)
FACT_FIELDS = ("kubelet_version", "container_runtime", "runtime_version", "kubelet_flags", "pause_image")


def normalize_cluster_name(value: Any) -> str:
    if not isinstance(value, str) or not _DNS_LABEL.match(value):
        raise ValueError(f"{echo(value)} is not a cluster name (lowercase letters, digits and '-', at most 63)")
    return value


def normalize_node_name(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        raise ValueError(f"{echo(value)} is not a node name (a lowercase DNS name, at most 253 characters)")
    return value


def normalize_endpoint(value: Any) -> str:
    """A Docker endpoint: ``unix:///absolute/path`` or ``tcp://host:port``; empty for none."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or len(value) > 255:
        raise ValueError("must be a unix:// or tcp://host:port URL of at most 255 characters")
    if value.startswith("unix://"):
        path = value[len("unix://") :]
        if not _UNIX_PATH.match(path) or "/../" in path + "/":
            raise ValueError(
                f"{echo(value)}: a unix endpoint needs an absolute socket path, e.g. unix:///var/run/docker.sock"
            )
        return value
    if value.startswith("tcp://"):
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError:
            raise ValueError(f"{echo(value)}: bad host or port") from None
        host = parts.hostname or ""
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"{echo(value)}: a tcp endpoint is only tcp://host:port")
        if not host or port is None:
            raise ValueError(f"{echo(value)}: a tcp endpoint needs a host and a port, e.g. tcp://10.0.0.5:2376")
        if not (1 <= port <= 65535):
            raise ValueError(f"{echo(value)}: port must be 1-65535")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not _HOSTNAME.match(host):
                raise ValueError(f"{echo(value)}: {echo(host)} is not a host name or IP address") from None
        return f"tcp://{parts.netloc}"
    raise ValueError(f"{echo(value)}: only unix:// and tcp://host:port endpoints are supported")


def normalize_api_version(value: Any) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not _API_VERSION.match(value):
        raise ValueError(f"{echo(value, 40)} is not a Docker Engine API version (e.g. 1.24)")
    return value


def normalize_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "no", "0", "off"):
        return False
    raise ValueError(f"{echo(value, 40)} is not a boolean (true or false)")


def _version_or_blank(parse):
    def normalize(value: Any) -> str:
        if value is None or value == "":
            return ""
        parse(value)
        return value.strip()

    return normalize


def normalize_runtime_version(value: Any) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or len(value) > 128 or "\x00" in value:
        raise ValueError("must be a version string of at most 128 characters")
    return value.strip()


def normalize_desired_flags(value: Any) -> dict[str, str] | None:
    """The managed kubelet flags the service should hold a node to; null for no intent."""
    if value is None:
        return None
    flags = normalize_flags(value)
    for name in flags:
        if name == "feature-gates":
            raise ValueError("feature gates go in desired_gates, as a map of gate names to true or false")
        if name not in BOOL_FLAGS:
            raise ValueError(f"flag {name} is not one this service manages (one of {', '.join(BOOL_FLAGS)})")
    return flags


def normalize_desired_gates(value: Any) -> dict[str, bool | None] | None:
    """A node's own feature-gate settings over its cluster's (a null value takes the cluster's gate
    away on this node); null for none."""
    return None if value is None else normalize_gate_map(value, allow_null=True)


NORMALIZERS = {
    "name": normalize_node_name,
    "labels": normalize_labels,
    "docker_endpoint": normalize_endpoint,
    "managed": normalize_bool,
    "kubelet_version": _version_or_blank(parse_kube_version_checked),
    "container_runtime": normalize_runtime,
    "runtime_version": normalize_runtime_version,
    "docker_api_version": normalize_api_version,
    "kubelet_flags": normalize_flags,
    "pause_image": normalize_pause_image,
    "desired_flags": normalize_desired_flags,
    "desired_gates": normalize_desired_gates,
}
DEFAULTS = {
    "labels": {},
    "docker_endpoint": "",
    "managed": True,
    "kubelet_version": "",
    "container_runtime": "docker",
    "runtime_version": "",
    "docker_api_version": "",
    "kubelet_flags": {},
    "pause_image": "",
    "desired_flags": None,
    "desired_gates": None,
}


def check_runtime_version(runtime: str, version: str) -> None:
    """A Docker node's runtime version must be a Docker version."""
    if runtime == "docker" and version:
        parse_docker_version_checked(version)


def validate_node_row(row: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Validate one inventory row. Returns (clean values, errors by field)."""
    clean: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    if not isinstance(row, Mapping):
        return clean, {"non_field_errors": ["each node must be an object"]}
    for key in row:
        if key not in NODE_FIELDS:
            errors.setdefault(str(key)[:60], []).append("unknown field")
    if "name" not in row:
        errors.setdefault("name", []).append("this field is required")
    if "cluster" not in row:
        errors.setdefault("cluster", []).append("this field is required")
    else:
        try:
            clean["cluster"] = normalize_cluster_name(row["cluster"])
        except ValueError as exc:
            errors.setdefault("cluster", []).append(str(exc))
    for field_name, normalize in NORMALIZERS.items():
        if field_name not in row:
            continue
        value = row[field_name]
        if value is None and field_name not in ("name", "desired_flags", "desired_gates"):
            value = DEFAULTS[field_name]
        try:
            clean[field_name] = normalize(value)
        except ValueError as exc:
            errors.setdefault(field_name, []).append(str(exc))
    if "runtime_version" in clean and "runtime_version" not in errors:
        try:
            check_runtime_version(clean.get("container_runtime", "docker"), clean["runtime_version"])
        except ValueError as exc:
            errors.setdefault("runtime_version", []).append(str(exc))
    return clean, errors


@deconstructible
class FieldValidator:
    """A Django field validator that runs the normalizer of one inventory field."""

    def __init__(self, field_name: str):
        self.field_name = field_name

    def __call__(self, value):
        normalize = NORMALIZERS.get(self.field_name) or EXTRA_NORMALIZERS[self.field_name]
        try:
            normalize(value)
        except ValueError as exc:
            raise ValidationError(str(exc), code="invalid") from None

    def __eq__(self, other):
        return isinstance(other, FieldValidator) and other.field_name == self.field_name


EXTRA_NORMALIZERS = {"cluster_name": normalize_cluster_name}
