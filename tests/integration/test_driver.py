"""The Docker Engine driver over real HTTP against simulated nodes: facts, faults, apply, verify, TLS."""

import ssl
import time

import pytest
import trustme

from drivers.base import DriverError, Endpoint
from drivers.docker_engine import DockerEngineDriver
from tests.conftest import fleet_spec, node_group

driver = DockerEngineDriver(poll_interval=0.1)


def endpoint(fleet, name, **options):
    options.setdefault("timeout", 5)
    return Endpoint(fleet.endpoint(fleet.node("sim", name)), **options)


def test_facts_over_http(run_fleet):
    fleet = run_fleet(
        fleet_spec(
            node_group(
                "a",
                kubelet="v1.6.2-gke.0",
                docker="1.13.1-cs9",
                kubelet_flags={"enable-cri": "false"},
                pause_image="gcr.io/google_containers/pause-amd64:3.0",
                pods=3,
                containers=2,
            )
        )
    )
    facts = driver.facts(endpoint(fleet, "a"))
    assert facts.docker_version == "1.13.1-cs9"
    assert facts.api_version == "1.26"
    assert facts.kubelet_version == "v1.6.2-gke.0"
    assert facts.kubelet_flags == {"enable-cri": "false"}
    assert facts.pause_image == "gcr.io/google_containers/pause-amd64:3.0"
    assert facts.observed_pid_namespace == "isolated"
    assert len(facts.pods) == 3 and all(p.containers == 2 and p.sharing == 0 for p in facts.pods)


def test_shared_node_is_observed_shared(run_fleet):
    fleet = run_fleet(fleet_spec(node_group("a", kubelet="v1.7.3", docker="1.12.6")))
    assert driver.facts(endpoint(fleet, "a")).observed_pid_namespace == "shared"


def test_mixed_pods_are_observed_mixed(run_fleet):
    fleet = run_fleet(fleet_spec(node_group("a", kubelet="v1.6.4", docker="1.12.6", pods=1)), sync_interval=60)
    node = fleet.node("sim", "a")
    fleet.thread.run(node.backend.create_pod, "hand-made", "isolated")
    assert driver.facts(endpoint(fleet, "a")).observed_pid_namespace == "mixed"


@pytest.mark.parametrize(
    "faults, code",
    [
        ({"unreachable": True}, "unreachable"),
        ({"engine_too_old": True}, "engine-too-old"),
        ({"latency_ms": 1500}, "timeout"),
    ],
)
def test_faults_give_specific_errors(run_fleet, faults, code):
    fleet = run_fleet(fleet_spec(node_group("a", faults=faults)))
    with pytest.raises(DriverError) as excinfo:
        driver.facts(endpoint(fleet, "a", timeout=0.5))
    assert excinfo.value.code == code
    assert excinfo.value.message


def test_engine_too_old_reports_its_version(run_fleet):
    fleet = run_fleet(fleet_spec(node_group("a", docker="1.11.2")))
    with pytest.raises(DriverError) as excinfo:
        driver.facts(endpoint(fleet, "a"))
    assert excinfo.value.code == "engine-too-old"
    assert excinfo.value.facts == {"runtime_version": "1.11.2", "docker_api_version": "1.23"}
    assert "1.24" in excinfo.value.message


def test_flapping_node_is_sometimes_unreachable(run_fleet):
    fleet = run_fleet(fleet_spec(node_group("a", faults={"flapping_seconds": 0.3})))
    outcomes = set()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(outcomes) < 2:
        try:
            driver.facts(endpoint(fleet, "a"))
            outcomes.add("ok")
        except DriverError as exc:
            outcomes.add(exc.code)
        time.sleep(0.1)
    assert outcomes == {"ok", "unreachable"}


def test_random_latency_is_applied(run_fleet):
    fleet = run_fleet(fleet_spec(node_group("a", faults={"latency_ms": [20, 40]}, pods=0)))
    started = time.monotonic()
    driver.facts(endpoint(fleet, "a"))
    # version, helper create/start/wait/inspect/logs/remove, list: at least 8 requests of >= 20 ms
    assert time.monotonic() - started >= 8 * 0.02


def test_apply_is_atomic_keeps_previous_and_is_idempotent(run_fleet):
    fleet = run_fleet(fleet_spec(node_group("a", kubelet_flags={"enable-cri": "false"})))
    node = fleet.node("sim", "a")
    first = driver.apply(endpoint(fleet, "a"), {"enable-cri": "true", "max-pods": "50"})
    assert first.changed and first.previous_flags == {"enable-cri": "false"}
    assert first.kubelet_flags == {"enable-cri": "true"}
    assert "--enable-cri=false" in (node.kubelet_dir / "20-pidns.conf.prev").read_text()
    restart = (node.kubelet_dir / "restart-requested").read_text()
    second = driver.apply(endpoint(fleet, "a"), {"enable-cri": "true"})
    assert not second.changed
    assert (node.kubelet_dir / "restart-requested").read_text() == restart
    assert node.flags() == {"enable-cri": "true"}


def test_apply_failure_is_reported(run_fleet):
    fleet = run_fleet(fleet_spec(node_group("a", faults={"apply_fails": True})))
    with pytest.raises(DriverError) as excinfo:
        driver.apply(endpoint(fleet, "a"), {"enable-cri": "false"})
    assert excinfo.value.code == "apply-failed"
    assert "Read-only file system" in excinfo.value.message


def test_switch_to_shared_and_back_is_verified(run_fleet):
    fleet = run_fleet(fleet_spec(node_group("a", kubelet_flags={"enable-cri": "false"})))
    ep = endpoint(fleet, "a")
    driver.apply(ep, {"enable-cri": "true"})
    shared = driver.verify(ep, "shared", timeout=10)
    assert shared.mode == "shared"
    assert len(shared.proof) == 2 and all("PID 1 is 'tini' (the sandbox's tini)" in line for line in shared.proof)
    driver.apply(ep, {"enable-cri": "false"})
    isolated = driver.verify(ep, "isolated", timeout=10)
    assert all("not the sandbox's" in line for line in isolated.proof)


def test_verify_times_out_when_the_node_never_converges(run_fleet):
    fleet = run_fleet(
        fleet_spec(node_group("a", kubelet_flags={"enable-cri": "false"}, faults={"verify_never_converges": True}))
    )
    ep = endpoint(fleet, "a")
    assert driver.apply(ep, {"enable-cri": "true"}).changed
    with pytest.raises(DriverError) as excinfo:
        driver.verify(ep, "shared", timeout=1)
    assert excinfo.value.code == "verify-timeout"
    assert "observed isolated" in excinfo.value.message


def test_plain_http_to_a_remote_endpoint_is_refused_without_connecting():
    with pytest.raises(DriverError) as excinfo:
        driver.facts(Endpoint("tcp://10.255.255.1:2376", timeout=1))
    assert excinfo.value.code == "tls-required"


@pytest.mark.parametrize("url", ["", "http://127.0.0.1:2375"])
def test_missing_or_unsupported_endpoint(url):
    with pytest.raises(DriverError) as excinfo:
        driver.facts(Endpoint(url))
    assert excinfo.value.code == "no-endpoint"


@pytest.fixture
def tls_fleet(run_fleet):
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(context)
    fleet = run_fleet(fleet_spec(node_group("a")), ssl_context=context)
    return fleet, ca


def test_tls_with_the_right_ca_is_verified(tls_fleet):
    fleet, ca = tls_fleet
    facts = driver.facts(endpoint(fleet, "a", tls_ca=ca.cert_pem.bytes().decode()))
    assert facts.docker_version == "1.12.6"


def test_tls_with_an_unknown_ca_fails(tls_fleet):
    fleet, _ = tls_fleet
    other = trustme.CA()
    with pytest.raises(DriverError) as excinfo:
        driver.facts(endpoint(fleet, "a", tls_ca=other.cert_pem.bytes().decode()))
    assert excinfo.value.code == "tls"
    assert "certificate verify failed" in excinfo.value.message


def test_endpoint_repr_hides_key_material():
    assert "SECRET" not in repr(Endpoint("tcp://x:1", tls_ca="CA", tls_cert="CERT", tls_key="SECRET"))


def test_kubelet_restart_time_delays_the_new_mode(run_fleet):
    fleet = run_fleet(fleet_spec(node_group("a", kubelet_flags={"enable-cri": "false"}, faults={"restart_ms": 400})))
    ep = endpoint(fleet, "a")
    started = time.monotonic()
    driver.apply(ep, {"enable-cri": "true"})
    assert driver.facts(ep).observed_pid_namespace == "isolated"  # the kubelet is still restarting
    driver.verify(ep, "shared", timeout=5)
    assert time.monotonic() - started >= 0.4


def test_an_unreachable_engine_is_said_in_the_system_calls_words():
    """Not the HTTP library's chain of wrappers: what failed, where (a closed local port here)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nothing listens there
    with pytest.raises(DriverError) as excinfo:
        driver.facts(Endpoint(url=f"tcp://127.0.0.1:{port}", timeout=2))
    assert excinfo.value.code == "unreachable"
    assert excinfo.value.message == f"cannot connect to tcp://127.0.0.1:{port}: connection refused"
