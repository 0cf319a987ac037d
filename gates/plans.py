"""The two rollout plans as data, and ``decide()``.

Pure module: no Django import. ``decide(facts, plan, intent)`` says whether a node's pods share a
PID namespace, through which mechanism, why, what flags would change it and how it returns to
isolation:

* plan ``proposal`` follows the design proposal's 1.6/1.7 rollout (DESIGN.md 4.1);
* plan ``upstream`` follows what Kubernetes shipped (DESIGN.md 4.2).

The thresholds live on the plan objects below; the functions read them and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .facts import format_feature_gates, parse_bool, parse_feature_gates
from .policy import (
    CRI,
    DOCKER,
    DOCKERTOOLS,
    FLAG_DISABLE_SHARED_PID,
    FLAG_ENABLE_CRI,
    FLAG_EXPERIMENTAL_CRI,
    FLAG_FEATURE_GATES,
    GATE_POD_SHARE_PROCESS_NAMESPACE,
    INTENT_DEFAULT,
    INTENTS,
    ISOLATED,
    PER_POD,
    PLAN_PROPOSAL,
    PLAN_UPSTREAM,
    ROLLBACK_DOWNGRADE,
    ROLLBACK_KUBELET_FLAG,
    ROLLBACK_NOT_NEEDED,
    ROLLBACK_UNSUPPORTED,
    RUNTIME,
    SHARED,
    Code,
    Decision,
    Finding,
    NodeFacts,
    Rollback,
)
from .versions import DockerVersion, Version, parse_docker_version

Line = tuple[int, int]

PAUSE_REAPING_MIN = Version(3, 1, 0, text="3.1")


@dataclass(frozen=True)
class ProposalPlan:
    """The design proposal: sharing comes with the CRI and Docker >= 1.12."""

    name: str = PLAN_PROPOSAL
    cri_default: Line = (1, 6)
    cri_mandatory: Line = (1, 7)
    docker_shared_min: DockerVersion = field(default_factory=lambda: parse_docker_version("1.12.0"))


@dataclass(frozen=True)
class UpstreamPlan:
    """What Kubernetes shipped: a kubelet flag from 1.7, then per-pod sharing."""

    name: str = PLAN_UPSTREAM
    cri_default: Line = (1, 6)
    shared_pid_flag: Line = (1, 7)  # --docker-disable-shared-pid appears, sharing on by default
    isolated_default: Line = (1, 8)  # the flag defaults to true
    pod_share_alpha: Line = (1, 10)  # shareProcessNamespace behind an alpha gate; flag deprecated
    pod_share_beta: Line = (1, 12)  # flag removed, gate on by default
    pod_share_ga: Line = (1, 17)  # gate locked on
    runtime_per_pod: Line = (1, 10)
    docker_shared_min: DockerVersion = field(default_factory=lambda: parse_docker_version("1.13.1"))


PROPOSAL = ProposalPlan()
UPSTREAM = UpstreamPlan()
PLANS: Mapping[str, ProposalPlan | UpstreamPlan] = MappingProxyType({PROPOSAL.name: PROPOSAL, UPSTREAM.name: UPSTREAM})


class _Draft:
    """Accumulates one decision; ``finish`` freezes it."""

    def __init__(self, facts: NodeFacts, plan: str, intent: str):
        self.facts = facts
        self.plan = plan
        self.intent = intent
        self.current_flags = dict(facts.kubelet_flags)
        self.flags = dict(facts.kubelet_flags)
        self.reasons: list[Finding] = []
        self.warnings: list[Finding] = []
        self.blockers: list[Finding] = []

    def reason(self, code: str, message: str) -> None:
        self.reasons.append(Finding(code, message))

    def warn(self, code: str, message: str) -> None:
        self.warnings.append(Finding(code, message))

    def block(self, code: str, message: str) -> None:
        self.blockers.append(Finding(code, message))

    def finish(self, pid_namespace: str, mechanism: str, rollback: Rollback) -> Decision:
        if pid_namespace in (SHARED, PER_POD):
            _shared_warnings(self, mechanism, pid_namespace)
        changes = {
            name: MappingProxyType({"from": self.current_flags.get(name), "to": self.flags.get(name)})
            for name in sorted(set(self.current_flags) | set(self.flags))
            if self.current_flags.get(name) != self.flags.get(name)
        }
        return Decision(
            plan=self.plan,
            intent=self.intent,
            pid_namespace=pid_namespace,
            mechanism=mechanism,
            kubelet_flags=MappingProxyType(self.flags),
            changes_required=bool(changes),
            reasons=tuple(self.reasons),
            warnings=tuple(self.warnings),
            blockers=tuple(self.blockers),
            rollback=rollback,
            flag_changes=MappingProxyType(changes),
        )


def _flag_bool(flags: Mapping[str, str], name: str, default: bool) -> bool:
    value = flags.get(name)
    return default if value is None else parse_bool(value)


def _gate(flags: Mapping[str, str], gate: str) -> bool | None:
    value = flags.get(FLAG_FEATURE_GATES)
    return parse_feature_gates(value).get(gate) if value else None


def _with_gate(flags: Mapping[str, str], gate: str, on: bool) -> str:
    gates = parse_feature_gates(flags.get(FLAG_FEATURE_GATES, ""))
    gates[gate] = on
    return format_feature_gates(gates)


def _shared_warnings(d: _Draft, mechanism: str, pid_namespace: str) -> None:
    subject = "Pods that share a PID namespace" if pid_namespace == PER_POD else "Pods on this node"
    if mechanism == CRI:
        pause = d.facts.pause_version
        if pause is None:
            d.warn(
                Code.PAUSE_VERSION_UNKNOWN,
                "The pause image version is not known, so it cannot be confirmed that the infra "
                "container reaps orphaned zombies (pause 3.1 or newer does).",
            )
        elif pause < PAUSE_REAPING_MIN:
            d.warn(
                Code.PAUSE_NO_ZOMBIE_REAPING,
                f"Pause image {d.facts.pause_image} is older than 3.1 and does not reap orphaned "
                "zombies; with a shared PID namespace they accumulate. Use pause 3.1 or newer.",
            )
    d.warn(
        Code.INFRA_DEATH_RESTARTS_POD,
        f"{subject} share the infra container's PID namespace: if the infra (pause) container dies, "
        "every container in the pod dies with it and is restarted.",
    )


def _kubelet_prerelease(d: _Draft) -> None:
    kubelet = d.facts.kubelet_version
    if kubelet.is_prerelease:
        d.warn(
            Code.KUBELET_PRERELEASE,
            f"Kubelet {kubelet} is a pre-release; it is decided as a {kubelet.line_label} kubelet.",
        )


def decide(facts: NodeFacts, plan: str = PLAN_PROPOSAL, intent: str = INTENT_DEFAULT) -> Decision:
    """Decide a node's PID-namespace mode under ``plan`` for ``intent``.

    ``intent`` is ``default`` (keep the node's flags), ``shared`` or ``isolated``. When the intent
    cannot be met the decision carries blockers and describes the node as it is.
    """
    if plan not in PLANS:
        raise ValueError(f"unknown plan {plan!r}")
    if intent not in INTENTS:
        raise ValueError(f"unknown intent {intent!r}")
    d = _Draft(facts, plan, intent)
    _kubelet_prerelease(d)
    if plan == PLAN_PROPOSAL:
        return _decide_proposal(PROPOSAL, d)
    return _decide_upstream(UPSTREAM, d)


# --- plan "proposal" -------------------------------------------------------------------------


def _decide_proposal(p: ProposalPlan, d: _Draft) -> Decision:
    facts = d.facts
    if facts.container_runtime != DOCKER:
        return _runtime_shares_natively(d)
    line = facts.kubelet_version.line
    docker = facts.runtime_version
    docker_ok = docker >= p.docker_shared_min
    if line < p.cri_default:
        return _proposal_before_cri_default(p, d, docker_ok)
    if line < p.cri_mandatory:
        return _proposal_cri_optional(p, d, docker_ok)
    return _proposal_cri_mandatory(p, d, docker_ok)


def _runtime_shares_natively(d: _Draft) -> Decision:
    runtime = d.facts.container_runtime
    d.reason(Code.RUNTIME_SHARES_NATIVELY, f"The {runtime} runtime gives every pod one shared PID namespace.")
    if d.intent == ISOLATED:
        d.block(Code.RUNTIME_ALWAYS_SHARES, f"The {runtime} runtime cannot isolate PID namespaces within a pod.")
    rollback = Rollback(False, ROLLBACK_UNSUPPORTED, None, f"The {runtime} runtime always shares the PID namespace.")
    return d.finish(SHARED, RUNTIME, rollback)


def _docker_too_old(d: _Draft, minimum: DockerVersion) -> None:
    d.reason(
        Code.DOCKER_TOO_OLD,
        f"Docker {d.facts.runtime_version} is older than {minimum}, the first Docker that can share a "
        "PID namespace between containers.",
    )


def _proposal_before_cri_default(p: ProposalPlan, d: _Draft, docker_ok: bool) -> Decision:
    kubelet = d.facts.kubelet_version
    experimental = _flag_bool(d.flags, FLAG_EXPERIMENTAL_CRI, False)
    mechanism = CRI if experimental else DOCKERTOOLS
    d.reason(
        Code.KUBELET_TOO_OLD,
        f"Kubelet {kubelet} predates {p.cri_default[0]}.{p.cri_default[1]}: pods keep isolated PID namespaces.",
    )
    if experimental:
        d.reason(Code.EXPERIMENTAL_CRI, "The experimental CRI is on, but it does not share PID namespaces.")
    if d.intent == SHARED:
        d.block(Code.KUBELET_TOO_OLD, f"Sharing needs kubelet {p.cri_default[0]}.{p.cri_default[1]} or newer.")
        if not docker_ok:
            d.block(Code.DOCKER_TOO_OLD, f"Sharing needs Docker {p.docker_shared_min} or newer.")
    return d.finish(ISOLATED, mechanism, _already_isolated())


def _already_isolated() -> Rollback:
    return Rollback(True, ROLLBACK_NOT_NEEDED, None, "Pods already have isolated PID namespaces.")


def _proposal_cri_optional(p: ProposalPlan, d: _Draft, docker_ok: bool) -> Decision:
    cri_on = _flag_bool(d.flags, FLAG_ENABLE_CRI, True)
    if d.intent == SHARED:
        if not docker_ok:
            d.block(Code.DOCKER_TOO_OLD, f"Sharing needs Docker {p.docker_shared_min} or newer.")
        elif not cri_on:
            d.flags[FLAG_ENABLE_CRI] = "true"
    elif d.intent == ISOLATED and cri_on and docker_ok:
        d.flags[FLAG_ENABLE_CRI] = "false"
    cri_on = _flag_bool(d.flags, FLAG_ENABLE_CRI, True)
    if not cri_on:
        d.reason(
            Code.CRI_DISABLED, "--enable-cri=false: the legacy dockertools integration keeps PID namespaces isolated."
        )
        return d.finish(ISOLATED, DOCKERTOOLS, _already_isolated())
    d.reason(
        Code.CRI_DEFAULT, f"Kubelet {d.facts.kubelet_version} runs Docker through the CRI (dockershim) by default."
    )
    if not docker_ok:
        _docker_too_old(d, p.docker_shared_min)
        return d.finish(ISOLATED, CRI, _already_isolated())
    d.reason(
        Code.DOCKER_SHARES_PID,
        f"Docker {d.facts.runtime_version} supports a shared PID namespace, so dockershim shares it.",
    )
    rollback = Rollback(
        True,
        ROLLBACK_KUBELET_FLAG,
        MappingProxyType({**d.flags, FLAG_ENABLE_CRI: "false"}),
        "Set --enable-cri=false to fall back to dockertools with isolated PID namespaces.",
    )
    return d.finish(SHARED, CRI, rollback)


def _proposal_cri_mandatory(p: ProposalPlan, d: _Draft, docker_ok: bool) -> Decision:
    kubelet = d.facts.kubelet_version
    if FLAG_ENABLE_CRI in d.flags and not _flag_bool(d.flags, FLAG_ENABLE_CRI, True):
        d.warn(
            Code.CRI_DISABLE_IGNORED,
            f"--enable-cri=false is ignored by kubelet {kubelet}: the CRI cannot be disabled from "
            f"{p.cri_mandatory[0]}.{p.cri_mandatory[1]}.",
        )
    d.reason(Code.CRI_MANDATORY, f"Kubelet {kubelet} always runs Docker through the CRI (dockershim).")
    if not docker_ok:
        _docker_too_old(d, p.docker_shared_min)
        if d.intent == SHARED:
            d.block(Code.DOCKER_TOO_OLD, f"Sharing needs Docker {p.docker_shared_min} or newer.")
        return d.finish(ISOLATED, CRI, _already_isolated())
    d.reason(
        Code.DOCKER_SHARES_PID,
        f"Docker {d.facts.runtime_version} supports a shared PID namespace, so dockershim shares it.",
    )
    downgrade = (
        f"Isolation needs a downgrade: the kubelet to {p.cri_default[0]}.{p.cri_default[1]} with "
        f"--enable-cri=false, or Docker below {p.docker_shared_min}."
    )
    if d.intent == ISOLATED:
        d.block(Code.ROLLBACK_REQUIRES_DOWNGRADE, downgrade)
    return d.finish(SHARED, CRI, Rollback(True, ROLLBACK_DOWNGRADE, None, downgrade))


# --- plan "upstream" -------------------------------------------------------------------------


def _decide_upstream(p: UpstreamPlan, d: _Draft) -> Decision:
    facts = d.facts
    line = facts.kubelet_version.line
    if facts.container_runtime != DOCKER:
        if line < p.runtime_per_pod:
            return _runtime_shares_natively(d)
        return _runtime_per_pod(d)
    if line < p.shared_pid_flag:
        return _upstream_before_sharing(p, d)
    if line >= p.cri_default and FLAG_ENABLE_CRI in d.flags and not _flag_bool(d.flags, FLAG_ENABLE_CRI, True):
        d.warn(
            Code.CRI_DISABLE_IGNORED,
            f"--enable-cri=false is ignored by kubelet {facts.kubelet_version}: the flag was removed in 1.7.",
        )
    if line < p.pod_share_beta:
        return _upstream_shared_pid_flag(p, d)
    return _upstream_per_pod(p, d)


def _runtime_per_pod(d: _Draft) -> Decision:
    runtime = d.facts.container_runtime
    d.reason(Code.PER_POD_SHARING, f"With the {runtime} runtime, each pod chooses with shareProcessNamespace.")
    if d.intent in (SHARED, ISOLATED):
        d.block(Code.PER_POD_ONLY, "Sharing is chosen per pod (spec.shareProcessNamespace), not per node.")
    rollback = Rollback(True, ROLLBACK_NOT_NEEDED, None, "Pods share only when their spec sets shareProcessNamespace.")
    return d.finish(PER_POD, RUNTIME, rollback)


def _upstream_before_sharing(p: UpstreamPlan, d: _Draft) -> Decision:
    kubelet = d.facts.kubelet_version
    if kubelet.line < p.cri_default:
        mechanism = CRI if _flag_bool(d.flags, FLAG_EXPERIMENTAL_CRI, False) else DOCKERTOOLS
    else:
        mechanism = CRI if _flag_bool(d.flags, FLAG_ENABLE_CRI, True) else DOCKERTOOLS
    d.reason(
        Code.SHARING_NOT_RELEASED,
        f"Kubelet {kubelet} does not share PID namespaces with Docker; sharing shipped in "
        f"{p.shared_pid_flag[0]}.{p.shared_pid_flag[1]}.",
    )
    if mechanism == DOCKERTOOLS and kubelet.line >= p.cri_default:
        d.reason(Code.CRI_DISABLED, "--enable-cri=false: the legacy dockertools integration is in use.")
    if d.intent == SHARED:
        d.block(
            Code.SHARING_UNAVAILABLE,
            f"Sharing needs kubelet {p.shared_pid_flag[0]}.{p.shared_pid_flag[1]} or newer with Docker "
            f"{p.docker_shared_min} or newer.",
        )
    return d.finish(ISOLATED, mechanism, _already_isolated())


def _upstream_shared_pid_flag(p: UpstreamPlan, d: _Draft) -> Decision:
    kubelet = d.facts.kubelet_version
    line = kubelet.line
    docker_ok = d.facts.runtime_version >= p.docker_shared_min
    default_disabled = line >= p.isolated_default
    disabled = _flag_bool(d.flags, FLAG_DISABLE_SHARED_PID, default_disabled)
    if d.intent == SHARED:
        if not docker_ok:
            d.block(Code.DOCKER_TOO_OLD, f"Sharing needs Docker {p.docker_shared_min} or newer.")
        elif disabled:
            d.flags[FLAG_DISABLE_SHARED_PID] = "false"
    elif d.intent == ISOLATED and docker_ok and not disabled:
        d.flags[FLAG_DISABLE_SHARED_PID] = "true"
    explicit = FLAG_DISABLE_SHARED_PID in d.flags
    disabled = _flag_bool(d.flags, FLAG_DISABLE_SHARED_PID, default_disabled)
    if line >= p.pod_share_alpha:
        if explicit:
            d.warn(
                Code.SHARED_PID_FLAG_DEPRECATED,
                f"--{FLAG_DISABLE_SHARED_PID} is deprecated in {kubelet.line_label} and removed in "
                f"{p.pod_share_beta[0]}.{p.pod_share_beta[1]}; plan a move to per-pod shareProcessNamespace.",
            )
        gate = _gate(d.flags, GATE_POD_SHARE_PROCESS_NAMESPACE)
        d.warn(
            Code.POD_SHARE_GATE_ALPHA,
            f"Per-pod shareProcessNamespace is alpha in {kubelet.line_label} behind the "
            f"{GATE_POD_SHARE_PROCESS_NAMESPACE} gate, which is {'on' if gate else 'off'} on this node.",
        )
    if disabled:
        how = f"--{FLAG_DISABLE_SHARED_PID}=true" if explicit else f"kubelet {kubelet.line_label} isolates by default"
        code = Code.SHARED_PID_DISABLED if explicit else Code.ISOLATED_PID_DEFAULT
        d.reason(code, f"Shared PID namespaces are off ({how}).")
        return d.finish(ISOLATED, CRI, _already_isolated())
    if not docker_ok:
        _docker_too_old_upstream(p, d)
        return d.finish(ISOLATED, CRI, _already_isolated())
    if default_disabled:
        d.reason(Code.SHARED_PID_OPT_IN, f"--{FLAG_DISABLE_SHARED_PID}=false opts this node into sharing.")
    else:
        d.reason(
            Code.SHARED_PID_DEFAULT,
            f"Kubelet {kubelet.line_label} shares the PID namespace by default with Docker {p.docker_shared_min}+.",
        )
    rollback = Rollback(
        True,
        ROLLBACK_KUBELET_FLAG,
        MappingProxyType({**d.flags, FLAG_DISABLE_SHARED_PID: "true"}),
        f"Set --{FLAG_DISABLE_SHARED_PID}=true to isolate PID namespaces again.",
    )
    return d.finish(SHARED, CRI, rollback)


def _docker_too_old_upstream(p: UpstreamPlan, d: _Draft) -> None:
    d.reason(
        Code.DOCKER_TOO_OLD,
        f"Docker {d.facts.runtime_version} is older than {p.docker_shared_min}, "
        "which the kubelet needs to share PID namespaces.",
    )


def _upstream_per_pod(p: UpstreamPlan, d: _Draft) -> Decision:
    kubelet = d.facts.kubelet_version
    line = kubelet.line
    gate_locked = line >= p.pod_share_ga
    if FLAG_DISABLE_SHARED_PID in d.flags:
        d.warn(
            Code.SHARED_PID_FLAG_IGNORED,
            f"--{FLAG_DISABLE_SHARED_PID} was removed in {p.pod_share_beta[0]}.{p.pod_share_beta[1]} "
            "and has no effect.",
        )
    gate_may_turn_off = not gate_locked and _gate(d.flags, GATE_POD_SHARE_PROCESS_NAMESPACE) is not False
    if d.intent == ISOLATED and gate_may_turn_off and d.facts.runtime_version >= p.docker_shared_min:
        d.flags[FLAG_FEATURE_GATES] = _with_gate(d.flags, GATE_POD_SHARE_PROCESS_NAMESPACE, False)
    gate = _gate(d.flags, GATE_POD_SHARE_PROCESS_NAMESPACE)
    if gate is False and gate_locked:
        d.warn(
            Code.POD_SHARE_GATE_LOCKED,
            f"{GATE_POD_SHARE_PROCESS_NAMESPACE} is GA in {kubelet.line_label} and cannot be turned off.",
        )
    if d.intent == SHARED:
        d.block(Code.PER_POD_ONLY, "Sharing is chosen per pod (spec.shareProcessNamespace), not per node.")
    if gate is False and not gate_locked:
        d.reason(
            Code.POD_SHARE_GATE_DISABLED,
            f"{GATE_POD_SHARE_PROCESS_NAMESPACE}=false: no pod can share its PID namespace.",
        )
        return d.finish(ISOLATED, CRI, _already_isolated())
    if d.facts.runtime_version < p.docker_shared_min:
        _docker_too_old_upstream(p, d)
        return d.finish(ISOLATED, CRI, _already_isolated())
    d.reason(
        Code.PER_POD_SHARING, f"Kubelet {kubelet.line_label} lets each pod choose with spec.shareProcessNamespace."
    )
    if gate_locked:
        if d.intent == ISOLATED:
            d.block(Code.PER_POD_ONLY, f"{GATE_POD_SHARE_PROCESS_NAMESPACE} is GA and cannot be turned off per node.")
        rollback = Rollback(
            False,
            ROLLBACK_UNSUPPORTED,
            None,
            "Sharing cannot be turned off per node; remove shareProcessNamespace from the pod specs.",
        )
    else:
        rollback = Rollback(
            True,
            ROLLBACK_KUBELET_FLAG,
            MappingProxyType(
                {**d.flags, FLAG_FEATURE_GATES: _with_gate(d.flags, GATE_POD_SHARE_PROCESS_NAMESPACE, False)}
            ),
            f"Turn the {GATE_POD_SHARE_PROCESS_NAMESPACE} gate off to stop every pod from sharing.",
        )
    return d.finish(PER_POD, CRI, rollback)
