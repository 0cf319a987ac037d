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
    kubelet_config: str = "/var/lib/kubelet/config.yaml"

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
    config_gates: dict[str, bool] = field(default_factory=dict)
    kubelet_status: str = ""
    kubelet_args: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "container_runtime": self.container_runtime,
            "runtime_version": self.docker_version,
            "docker_api_version": self.api_version,
            "kubelet_version": self.kubelet_version,
            "kubelet_flags": dict(self.kubelet_flags),
            "pause_image": self.pause_image,
            "observed_pid_namespace": self.observed_pid_namespace,
            "config_gates": dict(self.config_gates),
            "kubelet_status": self.kubelet_status,
            "kubelet_args": dict(self.kubelet_args),
            "pods": [p.as_dict() for p in self.pods],
        }


@dataclass(frozen=True)
class ApplyResult:
    """What a write of the managed flags did. ``conflict`` means the node was not as expected (its
    kubelet version or managed flags changed since they were read): nothing was written, and
    ``kubelet_version`` and ``previous_flags`` say what the node has now."""

    changed: bool
    previous_flags: dict[str, str]
    kubelet_flags: dict[str, str]
    kubelet_version: str = ""
    conflict: bool = False


@dataclass(frozen=True)
class PodPoll:
    """One look at a node's pods: the node's mode and each pod, plus what the proof needs."""

    mode: str
    pods: tuple[PodObservation, ...]
    inspected: tuple[dict[str, Any], ...] = ()

    @property
    def sandboxes(self) -> list[str]:
        return sorted(p.sandbox_id for p in self.pods)


@dataclass(frozen=True)
class VerifyResult:
    mode: str
    elapsed: float
    proof: list[str] = field(default_factory=list)


class Driver(Protocol):
    """How the service reads, changes and checks a node. ``apply`` is idempotent and, given what
    the caller expects to find (``expect_flags``, ``expect_kubelet``), a compare-and-set."""

    def facts(self, endpoint: Endpoint) -> ObservedFacts: ...

    def engine_version(self, endpoint: Endpoint, fresh: bool = False, cached: bool = False) -> dict[str, str]: ...

    def apply(
        self,
        endpoint: Endpoint,
        kubelet_flags: dict[str, str],
        expect_flags: dict[str, str] | None = None,
        expect_kubelet: str | None = None,
    ) -> ApplyResult: ...

    def poll(self, endpoint: Endpoint) -> PodPoll: ...

    def prove(self, endpoint: Endpoint, poll: PodPoll, expected_mode: str) -> list[str] | None: ...

    def verify(self, endpoint: Endpoint, expected_mode: str, timeout: float) -> VerifyResult: ...
