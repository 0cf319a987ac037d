"""The vocabulary of a decision: facts in, Decision out, and the codes that explain it.

Pure module: no Django import. The codes are part of the API contract: automation matches on
them, so a code is never renamed; new ones may be added.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .versions import DockerVersion, KubeVersion, Version

# Container runtimes a node may report.
DOCKER = "docker"
RUNTIMES = ("docker", "rkt", "cri-o", "hyper", "containerd")

# PID-namespace modes a decision can give.
SHARED = "shared"
ISOLATED = "isolated"
PER_POD = "per-pod"
PID_NAMESPACES = (SHARED, ISOLATED, PER_POD)

# How the kubelet runs the node's pods.
CRI = "cri"
DOCKERTOOLS = "dockertools"
RUNTIME = "runtime"
MECHANISMS = (CRI, DOCKERTOOLS, RUNTIME)

# What an operator asks of a node.
INTENT_DEFAULT = "default"
INTENTS = (INTENT_DEFAULT, SHARED, ISOLATED)

# How a shared node returns to isolated PID namespaces.
ROLLBACK_KUBELET_FLAG = "kubelet-flag"
ROLLBACK_DOWNGRADE = "downgrade"
ROLLBACK_NOT_NEEDED = "not-needed"
ROLLBACK_UNSUPPORTED = "unsupported"
ROLLBACK_METHODS = (ROLLBACK_KUBELET_FLAG, ROLLBACK_DOWNGRADE, ROLLBACK_NOT_NEEDED, ROLLBACK_UNSUPPORTED)

PLAN_PROPOSAL = "proposal"
PLAN_UPSTREAM = "upstream"
PLANS = (PLAN_PROPOSAL, PLAN_UPSTREAM)

# Kubelet flags this service reads and manages.
FLAG_ENABLE_CRI = "enable-cri"
FLAG_EXPERIMENTAL_CRI = "experimental-cri"
FLAG_DISABLE_SHARED_PID = "docker-disable-shared-pid"
FLAG_FEATURE_GATES = "feature-gates"
GATE_POD_SHARE_PROCESS_NAMESPACE = "PodShareProcessNamespace"


class Code:
    """Reason, warning and blocker codes (API contract)."""

    # Reasons
    RUNTIME_SHARES_NATIVELY = "RUNTIME_SHARES_NATIVELY"
    KUBELET_TOO_OLD = "KUBELET_TOO_OLD"
    EXPERIMENTAL_CRI = "EXPERIMENTAL_CRI"
    CRI_DEFAULT = "CRI_DEFAULT"
    CRI_DISABLED = "CRI_DISABLED"
    CRI_MANDATORY = "CRI_MANDATORY"
    DOCKER_TOO_OLD = "DOCKER_TOO_OLD"
    DOCKER_SHARES_PID = "DOCKER_SHARES_PID"
    SHARING_NOT_RELEASED = "SHARING_NOT_RELEASED"
    SHARED_PID_DEFAULT = "SHARED_PID_DEFAULT"
    SHARED_PID_DISABLED = "SHARED_PID_DISABLED"
    SHARED_PID_OPT_IN = "SHARED_PID_OPT_IN"
    ISOLATED_PID_DEFAULT = "ISOLATED_PID_DEFAULT"
    PER_POD_SHARING = "PER_POD_SHARING"
    POD_SHARE_GATE_DISABLED = "POD_SHARE_GATE_DISABLED"
    # Warnings
    CRI_DISABLE_IGNORED = "CRI_DISABLE_IGNORED"
    PAUSE_NO_ZOMBIE_REAPING = "PAUSE_NO_ZOMBIE_REAPING"
    PAUSE_VERSION_UNKNOWN = "PAUSE_VERSION_UNKNOWN"
    INFRA_DEATH_RESTARTS_POD = "INFRA_DEATH_RESTARTS_POD"
    KUBELET_PRERELEASE = "KUBELET_PRERELEASE"
    SHARED_PID_FLAG_DEPRECATED = "SHARED_PID_FLAG_DEPRECATED"
    SHARED_PID_FLAG_IGNORED = "SHARED_PID_FLAG_IGNORED"
    POD_SHARE_GATE_ALPHA = "POD_SHARE_GATE_ALPHA"
    POD_SHARE_GATE_LOCKED = "POD_SHARE_GATE_LOCKED"
    # Blockers
    ROLLBACK_REQUIRES_DOWNGRADE = "ROLLBACK_REQUIRES_DOWNGRADE"
    RUNTIME_ALWAYS_SHARES = "RUNTIME_ALWAYS_SHARES"
    PER_POD_ONLY = "PER_POD_ONLY"
    SHARING_UNAVAILABLE = "SHARING_UNAVAILABLE"


# What each blocker means, in a line, where a page names blockers by code (the overview's counts,
# filters): the decision itself carries the sentence with the versions of the node at hand.
BLOCKER_WORDS = {
    Code.KUBELET_TOO_OLD: "the kubelet is too old to share a pod's PID namespace",
    Code.DOCKER_TOO_OLD: "Docker is too old to share a pod's PID namespace",
    Code.ROLLBACK_REQUIRES_DOWNGRADE: "going back to isolated would need a kubelet downgrade",
    Code.RUNTIME_ALWAYS_SHARES: "the runtime always shares the PID namespace within a pod",
    Code.PER_POD_ONLY: "sharing is chosen per pod (shareProcessNamespace), not per node",
    Code.SHARING_UNAVAILABLE: "no flag of this kubelet and Docker shares PID namespaces",
}


@dataclass(frozen=True)
class Finding:
    """One reason, warning or blocker: a stable code and a sentence for people."""

    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class Rollback:
    """How a node in this state returns to isolated PID namespaces.

    ``possible`` says whether isolation can be had at all; ``automatic`` whether this service can
    do it by itself (a kubelet flag change, or nothing to do). A downgrade is possible but not
    automatic.
    """

    possible: bool
    method: str
    kubelet_flags: Mapping[str, str] | None
    detail: str

    @property
    def automatic(self) -> bool:
        return self.method in (ROLLBACK_KUBELET_FLAG, ROLLBACK_NOT_NEEDED)

    def as_dict(self) -> dict[str, Any]:
        return {
            "possible": self.possible,
            "automatic": self.automatic,
            "method": self.method,
            "kubelet_flags": dict(self.kubelet_flags) if self.kubelet_flags is not None else None,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class NodeFacts:
    """What the decision engine knows of a node. Build it with :func:`gates.facts.parse_facts`."""

    kubelet_version: KubeVersion
    container_runtime: str
    runtime_version: DockerVersion | None
    kubelet_flags: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    pause_image: str = ""

    @property
    def pause_version(self) -> Version | None:
        from .versions import parse_pause_tag

        return parse_pause_tag(self.pause_image) if self.pause_image else None


@dataclass(frozen=True)
class Decision:
    """The engine's answer for one node under one plan and intent.

    When the intent cannot be met, ``blockers`` says why and the rest describes the node as it
    is, with ``changes_required`` false.
    """

    plan: str
    intent: str
    pid_namespace: str
    mechanism: str
    kubelet_flags: Mapping[str, str]
    changes_required: bool
    reasons: tuple[Finding, ...]
    warnings: tuple[Finding, ...]
    blockers: tuple[Finding, ...]
    rollback: Rollback
    flag_changes: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "intent": self.intent,
            "pid_namespace": self.pid_namespace,
            "mechanism": self.mechanism,
            "kubelet_flags": dict(self.kubelet_flags),
            "changes_required": self.changes_required,
            "flag_changes": {k: dict(v) for k, v in self.flag_changes.items()},
            "reasons": [f.as_dict() for f in self.reasons],
            "warnings": [f.as_dict() for f in self.warnings],
            "blockers": [f.as_dict() for f in self.blockers],
            "rollback": self.rollback.as_dict(),
        }
