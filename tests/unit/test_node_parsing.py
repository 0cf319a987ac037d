"""Pure pieces of the driver: the kubelet drop-in, the helper's output, observed modes, drift."""

import pytest

from drivers.dropin import Desired, DropinError, parse_dropin, parse_helper_output, render_dropin
from drivers.observe import init_process_name, node_mode, observe_pods, pause_image, ps_pid1
from nodes.drift import describe, detect_drift


def test_dropin_round_trip_keeps_only_managed_flags():
    text = render_dropin({"enable-cri": "false", "max-pods": "110", "feature-gates": "A=true,B=false"})
    assert 'Environment="KUBELET_PIDNS_ARGS=--enable-cri=false --feature-gates=A=true,B=false"' in text
    assert parse_dropin(text) == {"enable-cri": "false", "feature-gates": "A=true,B=false"}
    assert parse_dropin("") == {}


def test_dropin_refuses_values_that_would_break_the_unit():
    with pytest.raises(DropinError, match="enable-cri"):
        render_dropin({"enable-cri": 'false" --evil=1'})


def test_helper_output_sections():
    sections = parse_helper_output("==> kubelet-version\nv1.6.4\n\n==> dropin\n[Service]\n==> status\nok\n")
    assert sections == {"kubelet-version": "v1.6.4", "dropin": "[Service]", "status": "ok"}
    with pytest.raises(DropinError, match="status"):
        parse_helper_output("sh: cannot execute\n")


def container(cid, kind, sandbox="", pid_mode="", running=True, image="pause:3.1", pod="p", cmd=("sleep",)):
    labels = {"io.kubernetes.docker.type": kind, "io.kubernetes.pod.name": pod}
    if sandbox:
        labels["io.kubernetes.sandbox.id"] = sandbox
    return {
        "Id": cid,
        "Config": {"Labels": labels, "Image": image, "Cmd": list(cmd)},
        "HostConfig": {"PidMode": pid_mode},
        "State": {"Running": running},
    }


def test_observed_modes():
    shared = [container("s1", "podsandbox", pod="a"), container("c1", "container", "s1", "container:s1")]
    isolated = [container("s2", "podsandbox", pod="b"), container("c2", "container", "s2")]
    half = [
        container("s3", "podsandbox", pod="c"),
        container("c3", "container", "s3", "container:s3"),
        container("c4", "container", "s3"),
    ]
    assert node_mode(observe_pods(shared)) == "shared"
    assert node_mode(observe_pods(isolated)) == "isolated"
    assert node_mode(observe_pods(shared + isolated)) == "mixed"
    assert [p.mode for p in observe_pods(half)] == ["mixed"]
    assert node_mode(observe_pods([container("s9", "podsandbox")])) == "unknown"
    assert node_mode(observe_pods([])) == "unknown"
    # A stopped container does not count; a container sharing another pod's sandbox does not share its own.
    stopped = [container("s5", "podsandbox"), container("c5", "container", "s5", "container:s5", running=False)]
    assert node_mode(observe_pods(stopped)) == "unknown"
    assert pause_image(observe_pods(shared + isolated)) == "pause:3.1"


def test_init_process_and_ps():
    assert init_process_name({"Config": {"Entrypoint": None, "Cmd": ["/sbin/tini", "--", "sleep"]}}) == "tini"
    assert init_process_name({"Config": {"Entrypoint": ["/pause"], "Cmd": None}}) == "pause"
    assert ps_pid1("PID   COMMAND\n    1 tini\n    7 sleep\n") == "tini"
    assert ps_pid1("PID   COMMAND\n    7 sleep\n") is None


ISOLATED = Desired(flags={"enable-cri": "false"})


@pytest.mark.parametrize(
    "desired, flags, mode, expected_mode, drift",
    [
        # what the service wants is what it saw
        (ISOLATED, {"enable-cri": "false", "max-pods": "9"}, "isolated", "isolated", []),
        # a flag it does not manage, or a version, is not drift
        (ISOLATED, {"enable-cri": "false", "max-pods": "10"}, "isolated", "isolated", []),
        # a managed flag changed behind its back
        (ISOLATED, {}, "shared", "isolated", [("kubelet_flags", "enable-cri"), ("observed_pid_namespace", None)]),
        # a gate it wants is missing
        (
            Desired(flags={}, gates={"PodShareProcessNamespace": True}),
            {},
            "isolated",
            "isolated",
            [("feature_gates", "PodShareProcessNamespace")],
        ),
        # pods in mixed modes, or in another mode than the settings give
        (ISOLATED, {"enable-cri": "false"}, "mixed", "isolated", [("observed_pid_namespace", None)]),
        (ISOLATED, {"enable-cri": "false"}, "shared", "isolated", [("observed_pid_namespace", None)]),
        # nothing seen, nothing to say
        (ISOLATED, {"enable-cri": "false"}, "unknown", "isolated", []),
        # no intent yet: only the pods can drift
        (None, {"enable-cri": "true"}, "shared", "shared", []),
        (None, {"enable-cri": "true"}, "mixed", "shared", [("observed_pid_namespace", None)]),
    ],
)
def test_drift(desired, flags, mode, expected_mode, drift):
    found = detect_drift(desired=desired, observed_flags=flags, observed_mode=mode, expected_mode=expected_mode)
    assert [(d["field"], d.get("key")) for d in found] == drift
    assert all(describe(d) for d in found)


def test_drift_in_words():
    assert describe({"field": "kubelet_flags", "key": "enable-cri", "desired": "false", "observed": None}) == (
        "flag --enable-cri: wanted false, found unset"
    )
    assert "mixed" in describe({"field": "observed_pid_namespace", "desired": "shared", "observed": "mixed"})
