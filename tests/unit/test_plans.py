"""decide(): every row of both plans' tables (DESIGN.md 4.1, 4.2) and their boundaries."""

import pytest

from gates.facts import FactsError, parse_facts
from gates.plans import decide
from gates.policy import Code


def dec(
    kubelet,
    docker="1.12.6",
    flags=None,
    *,
    plan="proposal",
    intent="default",
    runtime="docker",
    pause="k8s.gcr.io/pause:3.1",
):
    facts = parse_facts(
        {
            "kubelet_version": kubelet,
            "container_runtime": runtime,
            "runtime_version": docker,
            "kubelet_flags": flags or {},
            "pause_image": pause,
        }
    )
    return decide(facts, plan, intent)


def codes(findings):
    return [f.code for f in findings]


# --- plan "proposal": the table of DESIGN.md 4.1, row by row -----------------------------------

PROPOSAL_ROWS = [
    # kubelet, docker, flags, pid_namespace, mechanism, reason code, rollback method
    ("v1.5.7", "1.12.6", {}, "isolated", "dockertools", Code.KUBELET_TOO_OLD, "not-needed"),
    ("v1.5.7", "1.11.2", {}, "isolated", "dockertools", Code.KUBELET_TOO_OLD, "not-needed"),
    ("v1.5.7", "1.13.1", {"experimental-cri": "true"}, "isolated", "cri", Code.EXPERIMENTAL_CRI, "not-needed"),
    ("v1.6.0", "1.12.0", {}, "shared", "cri", Code.DOCKER_SHARES_PID, "kubelet-flag"),
    ("v1.6.4", "1.12.6", {"enable-cri": "true"}, "shared", "cri", Code.CRI_DEFAULT, "kubelet-flag"),
    ("v1.6.4", "1.11.2", {}, "isolated", "cri", Code.DOCKER_TOO_OLD, "not-needed"),
    ("v1.6.4", "1.12.0-rc4", {}, "isolated", "cri", Code.DOCKER_TOO_OLD, "not-needed"),
    ("v1.6.4", "1.12.6", {"enable-cri": "false"}, "isolated", "dockertools", Code.CRI_DISABLED, "not-needed"),
    ("v1.6.4", "1.11.2", {"enable-cri": "false"}, "isolated", "dockertools", Code.CRI_DISABLED, "not-needed"),
    ("v1.7.0", "1.12.0", {}, "shared", "cri", Code.CRI_MANDATORY, "downgrade"),
    ("v1.7.0", "1.12.6", {"enable-cri": "false"}, "shared", "cri", Code.CRI_MANDATORY, "downgrade"),
    ("v1.9.3", "17.03.1-ce", {}, "shared", "cri", Code.CRI_MANDATORY, "downgrade"),
    ("v1.7.0", "1.11.2", {}, "isolated", "cri", Code.DOCKER_TOO_OLD, "not-needed"),
    ("v1.7.0-beta.2", "1.12.6", {}, "shared", "cri", Code.CRI_MANDATORY, "downgrade"),
    ("v1.6.9+coreos.0", "1.12.6", {}, "shared", "cri", Code.CRI_DEFAULT, "kubelet-flag"),
    ("v1.6.2-gke.0", "1.13.1-cs9", {}, "shared", "cri", Code.CRI_DEFAULT, "kubelet-flag"),
]


@pytest.mark.parametrize("kubelet, docker, flags, pid, mechanism, reason, rollback", PROPOSAL_ROWS)
def test_proposal_table(kubelet, docker, flags, pid, mechanism, reason, rollback):
    d = dec(kubelet, docker, flags)
    assert (d.pid_namespace, d.mechanism, d.rollback.method) == (pid, mechanism, rollback)
    assert reason in codes(d.reasons)
    assert d.blockers == () and d.changes_required is False
    assert dict(d.kubelet_flags) == flags


@pytest.mark.parametrize("runtime", ["rkt", "cri-o", "hyper", "containerd"])
@pytest.mark.parametrize("kubelet", ["v1.5.0", "v1.6.4", "v1.7.0", "v1.12.0"])
def test_proposal_other_runtimes_share_and_cannot_roll_back(runtime, kubelet):
    d = dec(kubelet, None, runtime=runtime)
    assert (d.pid_namespace, d.mechanism) == ("shared", "runtime")
    assert d.rollback.method == "unsupported" and d.rollback.possible is False
    assert codes(d.reasons) == [Code.RUNTIME_SHARES_NATIVELY]
    blocked = dec(kubelet, None, runtime=runtime, intent="isolated")
    assert codes(blocked.blockers) == [Code.RUNTIME_ALWAYS_SHARES]
    assert blocked.pid_namespace == "shared" and not blocked.changes_required


def test_docker_112_boundary_under_proposal():
    assert dec("v1.6.0", "1.11.99").pid_namespace == "isolated"
    assert dec("v1.6.0", "1.12.0-rc4").pid_namespace == "isolated"
    assert dec("v1.6.0", "1.12.0").pid_namespace == "shared"


def test_kubelet_16_boundary_under_proposal():
    assert dec("v1.5.99", "1.12.6").pid_namespace == "isolated"
    assert dec("v1.6.0-alpha.1", "1.12.6").pid_namespace == "shared"  # a pre-release belongs to its line
    assert dec("v1.6.0", "1.12.6").pid_namespace == "shared"


def test_kubelet_16_with_cri_disabled_can_be_switched_to_shared():
    d = dec("v1.6.4", "1.12.6", {"enable-cri": "false"}, intent="shared")
    assert (d.pid_namespace, d.mechanism, d.changes_required) == ("shared", "cri", True)
    assert dict(d.kubelet_flags) == {"enable-cri": "true"}
    assert dict(d.flag_changes["enable-cri"]) == {"from": "false", "to": "true"}
    assert dict(d.rollback.kubelet_flags) == {"enable-cri": "false"}


def test_kubelet_16_shared_can_be_isolated_by_flag():
    d = dec("v1.6.4", "1.12.6", {"max-pods": "110"}, intent="isolated")
    assert (d.pid_namespace, d.mechanism) == ("isolated", "dockertools")
    assert dict(d.kubelet_flags) == {"max-pods": "110", "enable-cri": "false"}
    assert d.rollback.method == "not-needed"


def test_kubelet_17_cannot_disable_cri():
    d = dec("v1.7.0", "1.12.6", {"enable-cri": "false"}, intent="isolated")
    assert codes(d.blockers) == [Code.ROLLBACK_REQUIRES_DOWNGRADE]
    assert Code.CRI_DISABLE_IGNORED in codes(d.warnings)
    assert d.pid_namespace == "shared" and d.changes_required is False
    assert d.rollback.possible is True and d.rollback.automatic is False


def test_shared_intent_blocked_by_old_docker_or_old_kubelet():
    assert codes(dec("v1.6.4", "1.11.2", intent="shared").blockers) == [Code.DOCKER_TOO_OLD]
    assert codes(dec("v1.8.0", "1.12.0-rc4", intent="shared").blockers) == [Code.DOCKER_TOO_OLD]
    assert codes(dec("v1.5.7", "1.12.6", intent="shared").blockers) == [Code.KUBELET_TOO_OLD]
    both = dec("v1.5.7", "1.11.0", intent="shared")
    assert codes(both.blockers) == [Code.KUBELET_TOO_OLD, Code.DOCKER_TOO_OLD]
    assert both.pid_namespace == "isolated" and not both.changes_required


def test_intent_already_met_changes_nothing():
    assert not dec("v1.6.4", "1.12.6", intent="shared").changes_required
    assert not dec("v1.6.4", "1.11.0", intent="isolated").changes_required


@pytest.mark.parametrize(
    "pause, warning",
    [
        ("gcr.io/google_containers/pause-amd64:3.0", Code.PAUSE_NO_ZOMBIE_REAPING),
        ("gcr.io/google_containers/pause-amd64:2.0", Code.PAUSE_NO_ZOMBIE_REAPING),
        ("", Code.PAUSE_VERSION_UNKNOWN),
        ("k8s.gcr.io/pause@sha256:0123", Code.PAUSE_VERSION_UNKNOWN),
        ("k8s.gcr.io/pause:3.1", None),
        ("registry.k8s.io/pause:3.10", None),
    ],
)
def test_pause_warning_when_shared(pause, warning):
    d = dec("v1.6.4", "1.12.6", pause=pause)
    pause_codes = [c for c in codes(d.warnings) if c.startswith("PAUSE_")]
    assert pause_codes == ([warning] if warning else [])
    assert Code.INFRA_DEATH_RESTARTS_POD in codes(d.warnings)


def test_no_sharing_warnings_when_isolated():
    d = dec("v1.6.4", "1.11.2", pause="gcr.io/google_containers/pause-amd64:3.0")
    assert d.warnings == ()


def test_prerelease_kubelet_is_flagged():
    assert Code.KUBELET_PRERELEASE in codes(dec("v1.7.0-rc.1", "1.12.6").warnings)


# --- plan "upstream": DESIGN.md 4.2 --------------------------------------------------------------

UPSTREAM_ROWS = [
    ("v1.5.7", "1.13.1", {}, "isolated", "dockertools", Code.SHARING_NOT_RELEASED),
    ("v1.6.4", "1.13.1", {}, "isolated", "cri", Code.SHARING_NOT_RELEASED),
    ("v1.6.4", "1.13.1", {"enable-cri": "false"}, "isolated", "dockertools", Code.CRI_DISABLED),
    ("v1.7.0", "1.13.1", {}, "shared", "cri", Code.SHARED_PID_DEFAULT),
    ("v1.7.0", "1.13.0", {}, "isolated", "cri", Code.DOCKER_TOO_OLD),
    ("v1.7.0", "1.13.1-rc2", {}, "isolated", "cri", Code.DOCKER_TOO_OLD),
    ("v1.7.0", "17.03.1-ce", {"docker-disable-shared-pid": "true"}, "isolated", "cri", Code.SHARED_PID_DISABLED),
    ("v1.8.0", "17.03.1-ce", {}, "isolated", "cri", Code.ISOLATED_PID_DEFAULT),
    ("v1.9.3", "17.03.1-ce", {"docker-disable-shared-pid": "false"}, "shared", "cri", Code.SHARED_PID_OPT_IN),
    ("v1.9.3", "1.12.6", {"docker-disable-shared-pid": "false"}, "isolated", "cri", Code.DOCKER_TOO_OLD),
    ("v1.10.0", "17.03.1-ce", {}, "isolated", "cri", Code.ISOLATED_PID_DEFAULT),
    ("v1.11.3", "17.03.1-ce", {"docker-disable-shared-pid": "false"}, "shared", "cri", Code.SHARED_PID_OPT_IN),
    ("v1.12.0", "17.03.1-ce", {}, "per-pod", "cri", Code.PER_POD_SHARING),
    (
        "v1.16.0",
        "18.06.0-ce",
        {"feature-gates": "PodShareProcessNamespace=false"},
        "isolated",
        "cri",
        Code.POD_SHARE_GATE_DISABLED,
    ),
    ("v1.17.0", "18.06.0-ce", {}, "per-pod", "cri", Code.PER_POD_SHARING),
    ("v1.12.0", "1.12.6", {}, "isolated", "cri", Code.DOCKER_TOO_OLD),
]


@pytest.mark.parametrize("kubelet, docker, flags, pid, mechanism, reason", UPSTREAM_ROWS)
def test_upstream_table(kubelet, docker, flags, pid, mechanism, reason):
    d = dec(kubelet, docker, flags, plan="upstream")
    assert (d.pid_namespace, d.mechanism) == (pid, mechanism)
    assert reason in codes(d.reasons)
    assert not d.changes_required


def test_upstream_17_opt_out_by_flag():
    d = dec("v1.7.2", "17.03.1-ce", plan="upstream", intent="isolated")
    assert dict(d.kubelet_flags) == {"docker-disable-shared-pid": "true"}
    assert d.pid_namespace == "isolated"
    shared = dec("v1.7.2", "17.03.1-ce", plan="upstream")
    assert shared.rollback.method == "kubelet-flag"
    assert dict(shared.rollback.kubelet_flags) == {"docker-disable-shared-pid": "true"}


def test_upstream_18_opt_in_needs_docker_1131():
    d = dec("v1.8.0", "17.03.1-ce", plan="upstream", intent="shared")
    assert dict(d.flag_changes["docker-disable-shared-pid"]) == {"from": None, "to": "false"}
    assert d.pid_namespace == "shared"
    old = dec("v1.8.0", "1.13.0", plan="upstream", intent="shared")
    assert codes(old.blockers) == [Code.DOCKER_TOO_OLD] and not old.changes_required


def test_upstream_before_17_cannot_share():
    d = dec("v1.6.4", "17.03.1-ce", plan="upstream", intent="shared")
    assert codes(d.blockers) == [Code.SHARING_UNAVAILABLE]


def test_upstream_110_flag_deprecated_and_alpha_gate():
    d = dec("v1.10.5", "17.03.1-ce", {"docker-disable-shared-pid": "true"}, plan="upstream")
    assert {Code.SHARED_PID_FLAG_DEPRECATED, Code.POD_SHARE_GATE_ALPHA} <= set(codes(d.warnings))
    assert "off on this node" in next(w.message for w in d.warnings if w.code == Code.POD_SHARE_GATE_ALPHA)
    gated = dec("v1.10.5", "17.03.1-ce", {"feature-gates": "PodShareProcessNamespace=true"}, plan="upstream")
    assert "on on this node" in next(w.message for w in gated.warnings if w.code == Code.POD_SHARE_GATE_ALPHA)


def test_upstream_112_flag_removed_and_per_pod():
    d = dec("v1.12.1", "18.06.1-ce", {"docker-disable-shared-pid": "false"}, plan="upstream", intent="shared")
    assert Code.SHARED_PID_FLAG_IGNORED in codes(d.warnings)
    assert codes(d.blockers) == [Code.PER_POD_ONLY]
    assert d.pid_namespace == "per-pod"


def test_upstream_112_to_116_isolated_by_turning_the_gate_off():
    d = dec("v1.14.0", "18.06.1-ce", {"feature-gates": "Foo=true"}, plan="upstream", intent="isolated")
    assert dict(d.kubelet_flags) == {"feature-gates": "Foo=true,PodShareProcessNamespace=false"}
    assert d.pid_namespace == "isolated"


def test_upstream_117_gate_is_locked():
    d = dec(
        "v1.17.0", "19.03.1", {"feature-gates": "PodShareProcessNamespace=false"}, plan="upstream", intent="isolated"
    )
    assert Code.POD_SHARE_GATE_LOCKED in codes(d.warnings)
    assert Code.PER_POD_ONLY in codes(d.blockers)
    assert d.pid_namespace == "per-pod" and d.rollback.method == "unsupported"


@pytest.mark.parametrize("kubelet, pid", [("v1.9.0", "shared"), ("v1.10.0", "per-pod"), ("v1.17.0", "per-pod")])
def test_upstream_other_runtimes(kubelet, pid):
    d = dec(kubelet, None, plan="upstream", runtime="cri-o")
    assert (d.pid_namespace, d.mechanism) == (pid, "runtime")


def test_upstream_17_ignores_enable_cri_false():
    d = dec("v1.7.0", "1.13.1", {"enable-cri": "false"}, plan="upstream")
    assert Code.CRI_DISABLE_IGNORED in codes(d.warnings)


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"kubelet_version": "banana", "runtime_version": "1.12.6"}, "kubelet_version"),
        ({"runtime_version": "1.12.6"}, "kubelet_version"),
        ({"kubelet_version": "v1.6.4"}, "runtime_version"),
        ({"kubelet_version": "v1.6.4", "runtime_version": "1.12.6", "container_runtime": "lxc"}, "container_runtime"),
        (
            {"kubelet_version": "v1.6.4", "runtime_version": "1.12.6", "kubelet_flags": {"enable-cri": "maybe"}},
            "kubelet_flags",
        ),
        ({"kubelet_version": "v1.6.4", "runtime_version": "1.12.6", "kubelet_flags": ["enable-cri"]}, "kubelet_flags"),
        (
            {"kubelet_version": "v1.6.4", "runtime_version": "1.12.6", "kubelet_flags": {"feature-gates": "X"}},
            "kubelet_flags",
        ),
        (
            {"kubelet_version": "v1.6.4", "runtime_version": "1.12.6", "kubelet_flags": {"Bad Name": "1"}},
            "kubelet_flags",
        ),
        ({"kubelet_version": "v1.6.4", "runtime_version": "1.12.6", "pause_image": "not an image"}, "pause_image"),
    ],
)
def test_bad_facts_name_the_field(raw, field):
    with pytest.raises(FactsError) as excinfo:
        parse_facts(raw)
    assert field in excinfo.value.errors


def test_flags_are_normalised():
    facts = parse_facts(
        {"kubelet_version": "v1.6.4", "runtime_version": "1.12.6", "kubelet_flags": {"--enable-cri": False}}
    )
    assert dict(facts.kubelet_flags) == {"enable-cri": "false"}


def test_unknown_plan_or_intent_is_rejected():
    facts = parse_facts({"kubelet_version": "v1.6.4", "runtime_version": "1.12.6"})
    with pytest.raises(ValueError, match="plan"):
        decide(facts, "nightly")
    with pytest.raises(ValueError, match="intent"):
        decide(facts, "proposal", "sometimes")
