"""Pure pieces of the driver: the kubelet drop-in, the helper's output, observed modes, drift."""

import pytest

from drivers.dropin import DropinError, parse_dropin, parse_helper_output, render_dropin
from drivers.observe import init_process_name, node_mode, observe_pods, pause_image, ps_pid1
from nodes.drift import detect_drift


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


EXPECTED = {
    "kubelet_version": "v1.6.4",
    "runtime_version": "1.12.6",
    "kubelet_flags": {"enable-cri": "false", "max-pods": "9"},
    "pause_image": "k8s.gcr.io/pause:3.1",
}


@pytest.mark.parametrize(
    "observed, decided, fields",
    [
        ({**EXPECTED, "observed_pid_namespace": "isolated"}, "isolated", []),
        (
            {**EXPECTED, "runtime_version": "17.03.1-ce", "observed_pid_namespace": "isolated"},
            "isolated",
            ["runtime_version"],
        ),
        ({**EXPECTED, "kubelet_flags": {}, "observed_pid_namespace": "shared"}, "shared", ["kubelet_flags"]),
        ({**EXPECTED, "observed_pid_namespace": "mixed"}, "isolated", ["observed_pid_namespace"]),
        ({**EXPECTED, "observed_pid_namespace": "shared"}, "isolated", ["observed_pid_namespace"]),
        ({**EXPECTED, "observed_pid_namespace": "unknown"}, "isolated", []),
    ],
)
def test_drift(observed, decided, fields):
    assert [d["field"] for d in detect_drift(EXPECTED, observed, decided)] == fields


def test_no_drift_for_a_node_the_inventory_did_not_know():
    observed = {**EXPECTED, "observed_pid_namespace": "isolated"}
    assert detect_drift({"kubelet_version": ""}, observed, "isolated") == []
