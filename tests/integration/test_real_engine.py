"""With a real dockerd: the kernel's PID namespaces, seen through the driver alone."""

import time

import docker
import pytest

from drivers.base import Endpoint
from drivers.docker_engine import DockerEngineDriver
from simfleet.engines import NODE_LABEL
from tests.conftest import fleet_spec, node_group

driver = DockerEngineDriver(poll_interval=0.2)


def test_kubelet_16_switches_to_shared_and_back_proven_by_ps(run_fleet, real_engine):
    fleet = run_fleet(
        fleet_spec(node_group("n16", kubelet="v1.6.4", docker="1.12.6", kubelet_flags={"enable-cri": "false"}, pods=2)),
        engine="real",
        docker_url=real_engine,
    )
    ep = Endpoint(fleet.endpoint(fleet.node("sim", "n16")), timeout=30)
    before = driver.facts(ep)
    assert before.observed_pid_namespace == "isolated"
    assert before.kubelet_flags == {"enable-cri": "false"}

    assert driver.apply(ep, {"enable-cri": "true"}).changed
    shared = driver.verify(ep, "shared", timeout=60)
    assert len(shared.proof) == 2
    assert all("PID 1 is 'tini' (the sandbox's tini)" in line for line in shared.proof)
    assert driver.facts(ep).kubelet_flags == {"enable-cri": "true"}

    assert driver.apply(ep, {"enable-cri": "false"}).changed
    isolated = driver.verify(ep, "isolated", timeout=60)
    assert all("PID 1 is 'sleep' (not the sandbox's tini)" in line for line in isolated.proof)


def test_killing_a_shared_sandbox_kills_its_pod_and_the_stand_in_restarts_it(run_fleet, real_engine):
    fleet = run_fleet(
        fleet_spec(node_group("n17", kubelet="v1.7.3", docker="1.12.6", pods=1)), engine="real", docker_url=real_engine
    )
    node = fleet.node("sim", "n17")
    api = docker.APIClient(base_url=real_engine, version="auto")
    label = f"{NODE_LABEL}={node.key}"
    sandbox = api.containers(filters={"label": [label, "io.kubernetes.docker.type=podsandbox"]})[0]
    app = api.containers(filters={"label": [label, "io.kubernetes.docker.type=container"]})[0]
    api.kill(sandbox["Id"])
    deadline = time.monotonic() + 10
    while api.inspect_container(app["Id"])["State"]["Running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    # The kernel killed the app with the sandbox's PID namespace.
    assert not api.inspect_container(app["Id"])["State"]["Running"] if _exists(api, app["Id"]) else True
    ep = Endpoint(fleet.endpoint(node), timeout=30)
    verified = driver.verify(ep, "shared", timeout=30)
    new_sandbox = api.containers(filters={"label": [label, "io.kubernetes.docker.type=podsandbox"]})[0]
    assert new_sandbox["Id"] != sandbox["Id"]
    assert verified.proof and "tini" in verified.proof[0]


def _exists(api, container_id):
    try:
        api.inspect_container(container_id)
        return True
    except docker.errors.NotFound:
        return False


@pytest.mark.parametrize("pods", [0])
def test_facts_from_a_node_without_pods(run_fleet, real_engine, pods):
    fleet = run_fleet(fleet_spec(node_group("empty", pods=pods)), engine="real", docker_url=real_engine)
    facts = driver.facts(Endpoint(fleet.endpoint(fleet.node("sim", "empty")), timeout=30))
    assert facts.observed_pid_namespace == "unknown" and facts.kubelet_version == "v1.6.4"
