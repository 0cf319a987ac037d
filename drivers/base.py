"""The driver protocol: how this service reads, changes and checks a node.

A driver has three operations and raises :class:`DriverError` with a stable ``code`` for every
failure, so callers record a specific reason on the node instead of a crash or a silent unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from .observe import PodObservation


class ErrorCode:
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    TLS = "tls"
    TLS_REQUIRED = "tls-required"
    ENGINE_TOO_OLD = "engine-too-old"
    ENGINE_ERROR = "engine-error"
    HELPER_FAILED = "helper-failed"
    APPLY_FAILED = "apply-failed"
    VERIFY_TIMEOUT = "verify-timeout"
    NO_ENDPOINT = "no-endpoint"


class DriverError(Exception):
    """A node operation that failed. ``code`` is one of :class:`ErrorCode`; ``facts`` holds what
    was learnt before the failure (for example the Docker version of an engine too old to manage)."""

    def __init__(self, code: str, message: str, facts: dict[str, Any] | None = None):
        self.code = code
        self.message = message
        self.facts = facts or {}
        super().__init__(f"{code}: {message}")


@dataclass(frozen=True)
class Endpoint:
    """How to reach one node's Docker engine. PEM material is held in memory only."""

    url: str
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    insecure: bool = False
    timeout: float = 10.0
    kubelet_dir: str = "/etc/kubernetes/pidns"

    def __repr__(self) -> str:  # never print key material
        return f"Endpoint({self.url!r}, tls={'yes' if self.tls_ca else 'no'}, insecure={self.insecure})"


@dataclass(frozen=True)
class ObservedFacts:
    docker_version: str
    api_version: str
    kubelet_version: str
    kubelet_flags: dict[str, str]
    pause_image: str
    observed_pid_namespace: str
    pods: tuple[PodObservation, ...] = ()
    container_runtime: str = "docker"

    def as_dict(self) -> dict[str, Any]:
        return {
            "container_runtime": self.container_runtime,
            "runtime_version": self.docker_version,
            "docker_api_version": self.api_version,
            "kubelet_version": self.kubelet_version,
            "kubelet_flags": dict(self.kubelet_flags),
            "pause_image": self.pause_image,
            "observed_pid_namespace": self.observed_pid_namespace,
            "pods": [p.as_dict() for p in self.pods],
        }


@dataclass(frozen=True)
class ApplyResult:
    changed: bool
    previous_flags: dict[str, str]
    kubelet_flags: dict[str, str]


@dataclass(frozen=True)
class VerifyResult:
    mode: str
    elapsed: float
    proof: list[str] = field(default_factory=list)


class Driver(Protocol):
    def facts(self, endpoint: Endpoint) -> ObservedFacts: ...

    def apply(self, endpoint: Endpoint, kubelet_flags: dict[str, str]) -> ApplyResult: ...

    def verify(self, endpoint: Endpoint, expected_mode: str, timeout: float) -> VerifyResult: ...
