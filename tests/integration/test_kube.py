"""The Kubernetes API: simfleet's simulated API checked with kubectl, cluster sync (paging, an
expired continue token), and rollouts that cordon, drain and uncordon around each change."""

import glob
import io
import os
import shutil
import subprocess
import time

import pytest
from django.core.management import call_command

from core.models import AuditEvent
from drivers.docker_engine import DockerEngineDriver
from nodes.access import endpoint_for
from nodes.kubesync import cluster_sync
from nodes.management.commands.simfleet import register
from nodes.models import Cluster, Node
from rollout import transitions
from rollout.models import NodeOperation
from rollout.strategy import Strategy
from simfleet.spec import parse_spec
from tests.rollout_driver import drive, run_operation

pytestmark = pytest.mark.django_db(transaction=True)
ISOLATED_16 = {"enable-cri": "false"}


@pytest.fixture(autouse=True)
def fast(settings):
    settings.PIDNS_VERIFY_POLL = 0.05
    settings.PIDNS_VERIFY_TIMEOUT = 10
    settings.PIDNS_DRIVER_TIMEOUT = 5
    settings.PIDNS_DRAIN_RETRY_MAX = 0.5


def kube_spec(count=3, workloads=(), name="kc", **group):
    return parse_spec(
        {
            "clusters": [
                {
                    "name": name,
                    "plan": "proposal",
                    "kubernetes": True,
                    "workloads": list(workloads),
                    "nodes": [
                        {
                            "name": f"{name}-{{i}}",
                            "count": count,
                            "kubelet_version": "v1.6.4",
                            "docker_version": "1.12.6",
                            "kubelet_flags": ISOLATED_16,
                            **group,
                        }
                    ],
                }
            ]
        }
    )


@pytest.fixture
def kube_sim(run_fleet):
    def make(count=3, workloads=(), register_it=True, **group):
        fleet = run_fleet(kube_spec(count, workloads, **group), sync_interval=0.05)
        if register_it:
            register(fleet)
            call_command("audit", quiet=True, stdout=io.StringIO())
        return fleet, fleet.clusters["kc"]

    return make


def create(cluster, intent="shared", **options):
    strategy = {k: options.pop(k) for k in list(options) if k in Strategy.__dataclass_fields__}
    rollout = transitions.rollout_create(
        actor="user:test", name="r", cluster=cluster, intent=intent, strategy=Strategy(**strategy), **options
    )
    return transitions.rollout_start(actor="user:test", rollout=rollout)


def pod_modes(fleet, sim_cluster) -> dict[str, str]:
    """Each pod's mode on the engines, by pod name, over the cluster's nodes."""
    driver = DockerEngineDriver(poll_interval=0.05)
    modes = {}
    for node in Node.objects.filter(cluster__name=sim_cluster.name):
        for pod in driver.poll(endpoint_for(node)).pods:
            modes[pod.name] = pod.mode
    return modes


# --- kubectl against the simulator ----------------------------------------------------------------

KUBECTL = shutil.which("kubectl")
# The other minors the machine's Google Cloud SDK ships beside the one on the PATH.
MINORS = sorted(glob.glob(os.path.join(os.path.dirname(os.path.realpath(KUBECTL or "/nonexistent")), "kubectl.1.*")))


@pytest.fixture(autouse=True)
def _kubectl_in_ci(request):
    if KUBECTL is None and "kubectl" in request.node.name and os.environ.get("CI"):
        pytest.fail("CI checks the simulated Kubernetes API with kubectl: install it")


def kubectl(fleet, cluster, *args, timeout=90, binary=None):
    config = fleet.kubeconfig_path(cluster)
    return subprocess.run(  # noqa: S603
        [binary or KUBECTL, "--kubeconfig", str(config), "--cache-dir", str(config.parent / "cache"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_kubectl_gets_cordons_drains_and_uncordons_the_simulated_cluster(kube_sim):
    fleet, cluster = kube_sim(
        3,
        [
            {"kind": "Deployment", "name": "web", "replicas": 4, "max_unavailable": 1},
            {"kind": "Deployment", "name": "cache", "replicas": 2, "empty_dir": True},
            {"kind": "DaemonSet", "name": "agent"},
        ],
        register_it=False,
    )
    nodes = kubectl(fleet, cluster, "get", "nodes", "-o", "wide")
    assert nodes.returncode == 0, nodes.stderr
    lines = nodes.stdout.splitlines()
    assert lines[0].split()[:5] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert [line.split()[4] for line in lines[1:]] == ["v1.6.4"] * 3
    assert all("docker://1.12.6" in line for line in lines[1:])

    on_first = kubectl(fleet, cluster, "get", "pods", "--field-selector", "spec.nodeName=kc-01", "-o", "name")
    assert on_first.returncode == 0, on_first.stderr
    expected = sorted(f"pod/{p.name}" for p in cluster.pods_on("kc-01"))
    assert sorted(on_first.stdout.split()) == expected and len(expected) >= 2

    assert kubectl(fleet, cluster, "cordon", "kc-02").returncode == 0
    assert cluster.unschedulable["kc-02"]
    drained = kubectl(
        fleet, cluster, "drain", "kc-02", "--ignore-daemonsets", "--delete-emptydir-data", "--force", "--timeout", "60s"
    )
    assert drained.returncode == 0, drained.stderr
    assert "drained" in drained.stdout
    left = cluster.pods_on("kc-02")
    assert [p.workload.kind for p in left] == ["DaemonSet"]  # only the DaemonSet's pod stays
    status = kubectl(fleet, cluster, "get", "node", "kc-02", "--no-headers")
    assert "SchedulingDisabled" in status.stdout
    time.sleep(0.5)  # the evicted pods' controllers recreate them on schedulable nodes
    assert sum(1 for p in cluster.pods.values() if p.workload.name == "web") == 4
    assert all(p.node != "kc-02" for p in cluster.pods.values() if p.workload.kind == "Deployment")

    assert kubectl(fleet, cluster, "uncordon", "kc-02").returncode == 0
    assert not cluster.unschedulable["kc-02"]


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_kubectl_drain_blocked_by_a_disruption_budget_times_out(kube_sim):
    fleet, cluster = kube_sim(2, [{"kind": "Deployment", "name": "stuck", "replicas": 2, "max_unavailable": 0}])
    started = time.monotonic()
    drained = kubectl(fleet, cluster, "drain", "kc-01", "--ignore-daemonsets", "--timeout", "3s")
    assert drained.returncode != 0
    assert "disruption budget" in drained.stderr and "global timeout reached: 3s" in drained.stderr
    assert time.monotonic() - started >= 3
    assert cluster.refused_evictions >= 1 and cluster.evictions == 0
    assert cluster.unschedulable["kc-01"]  # kubectl cordons first and leaves it so


@pytest.mark.skipif(not MINORS, reason="no other kubectl minors on this machine")
@pytest.mark.parametrize("binary", MINORS, ids=[os.path.basename(m) for m in MINORS])
def test_every_shipped_kubectl_minor_reads_cordons_and_drains_the_simulated_cluster(kube_sim, binary):
    fleet, cluster = kube_sim(2, [{"kind": "Deployment", "name": "web", "replicas": 2}], register_it=False)
    nodes = kubectl(fleet, cluster, "get", "nodes", binary=binary)
    assert nodes.returncode == 0 and nodes.stdout.count("v1.6.4") == 2, nodes.stderr
    drained = kubectl(fleet, cluster, "drain", "kc-01", "--ignore-daemonsets", "--timeout", "30s", binary=binary)
    assert drained.returncode == 0, drained.stderr
    assert cluster.unschedulable["kc-01"] and not cluster.pods_on("kc-01")
    assert kubectl(fleet, cluster, "uncordon", "kc-01", binary=binary).returncode == 0
    assert not cluster.unschedulable["kc-01"]


# --- sync -------------------------------------------------------------------------------------------


def test_sync_pages_through_5000_nodes_and_relists_after_an_expired_continue_token(kube_sim):
    fleet, sim_cluster = kube_sim(5000, [], register_it=False, pods=0)
    cluster = Cluster.objects.create(
        name="kc", kube_api_server=fleet.api_url(sim_cluster), kube_ca_cert=fleet.kube_ca, kube_token=sim_cluster.token
    )
    requests = []
    original = sim_cluster.__class__.node_json

    def node_json(self, name):
        if name == "kc-2501" and not requests:
            requests.append("expired")
            self.continue_epoch += 1  # as if etcd compacted the list's revision mid-way
        return original(self, name)

    sim_cluster.__class__.node_json = node_json
    try:
        pages = []
        result = cluster_sync(actor="user:test", cluster=cluster, page_size=500, progress=pages.append)
    finally:
        sim_cluster.__class__.node_json = original
    assert requests == ["expired"]
    assert result.listed == 5000 and result.created == 5000
    assert Node.objects.filter(cluster=cluster, in_cluster=True).count() == 5000
    node = Node.objects.get(cluster=cluster, name="kc-0001")
    assert (node.kubelet_version, node.container_runtime, node.runtime_version) == ("v1.6.4", "docker", "1.12.6")
    assert node.docker_endpoint == fleet.endpoint(fleet.node("kc", "kc-0001"))
    assert node.ready is True and node.cordoned is False and node.desired_flags is None
    assert pages[-1] == 5000 and len(pages) >= 10


def test_sync_marks_nodes_that_left_and_keeps_what_an_operator_set(kube_sim):
    fleet, sim_cluster = kube_sim(3)
    cluster = Cluster.objects.get(name="kc")
    Node.objects.create(cluster=cluster, name="gone-node", kubelet_version="v1.6.4", runtime_version="1.12.6")
    sim_cluster.set_unschedulable("kc-02", True)
    result = call_command_output("cluster_sync", "kc")
    assert "3 nodes listed" in result and "1 left the cluster" in result
    gone = Node.objects.get(name="gone-node")
    assert gone.in_cluster is False and gone.left_cluster_at is not None
    assert Node.objects.get(name="kc-02").cordoned is True
    event = AuditEvent.objects.filter(verb="sync", object_type="cluster").latest("id")
    assert event.after["left"] == 1 and "gone-node" in event.after["left_nodes"]
    assert sim_cluster.token not in str(event.after)
    from tests.integration.test_dashboard import signed_in

    client = signed_in("reader")
    assert "left the cluster" in client.get(f"/nodes/{gone.pk}/").content.decode()
    page = client.get(f"/nodes/{Node.objects.get(name='kc-02').pk}/").content.decode()
    assert "Ready, cordoned (by an operator: rollouts leave it so)" in page
    listed = clients_api("reader2").get("/api/v1/nodes/", {"cluster": "kc", "in_cluster": "false"}).json()
    assert [n["name"] for n in listed["results"]] == ["gone-node"]
    cordoned = clients_api("reader3").get("/api/v1/nodes/", {"cluster": "kc", "cordoned": "true"}).json()
    assert [n["name"] for n in cordoned["results"]] == ["kc-02"]


def clients_api(name):
    from tests.integration.test_dashboard import signed_in

    return signed_in(name)


def call_command_output(*args) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue() + err.getvalue()


def test_runtime_versions_split_into_runtime_and_version():
    from drivers.kube import runtime_of

    assert runtime_of("docker://1.12.6") == ("docker", "1.12.6")
    assert runtime_of("containerd://1.7.2") == ("containerd", "1.7.2")
    assert runtime_of("cri-o://1.28.1") == ("cri-o", "1.28.1")
    assert runtime_of("1.12.6") == ("", "1.12.6")


# --- rollouts that drain ---------------------------------------------------------------------------


def test_a_drained_rollout_respects_the_budget_and_ends_with_every_pod_in_the_new_mode(kube_sim):
    fleet, sim_cluster = kube_sim(
        30,
        [
            {"kind": "Deployment", "name": "web", "replicas": 30, "max_unavailable": 1},
            {"kind": "DaemonSet", "name": "agent"},
        ],
    )
    cluster = Cluster.objects.get(name="kc")
    assert cluster.has_kube_api
    assert set(pod_modes(fleet, sim_cluster).values()) == {"isolated"}
    rollout = create(cluster, drain=True, canary_count=1, batch_size=10, max_unavailable=5)
    rollout = drive(rollout, max_seconds=120)
    assert rollout.status == "succeeded", rollout.reason
    assert sim_cluster.unavailable_peak["web"] <= 1  # the budget held: never two web pods down
    assert sim_cluster.evictions >= 30 and sim_cluster.refused_evictions > 0  # the budget was tested
    assert not any(sim_cluster.unschedulable.values())  # every node schedulable again
    assert not Node.objects.filter(cluster=cluster, cordoned_by_service=True).exists()
    time.sleep(0.5)
    modes = pod_modes(fleet, sim_cluster)
    assert len(modes) == 60 and set(modes.values()) == {"shared"}
    ops = NodeOperation.objects.filter(rollout=rollout)
    assert all(op.drain_state.get("uncordoned_at") and op.cordoned is False for op in ops)
    assert AuditEvent.objects.filter(verb="node-cordoned").count() == 30
    assert AuditEvent.objects.filter(verb="node-uncordoned").count() == 30


def test_a_budget_that_never_allows_eviction_fails_the_drain_and_uncordons(kube_sim):
    fleet, sim_cluster = kube_sim(2, [{"kind": "Deployment", "name": "stuck", "replicas": 2, "max_unavailable": 0}])
    cluster = Cluster.objects.get(name="kc")
    rollout = create(
        cluster, drain=True, drain_timeout=3, canary_count=0, batch_size=2, max_unavailable=2, max_failures=5
    )
    started = time.monotonic()
    rollout = drive(rollout, max_seconds=60)
    ops = list(NodeOperation.objects.filter(rollout=rollout, phase="forward"))
    assert {op.error_code for op in ops} == {"drain-timeout"}, [
        (op.state, op.skip_reason, rollout.status, rollout.reason) for op in ops
    ]
    assert "within 3s" in ops[0].error and "stuck-" in ops[0].error
    assert time.monotonic() - started >= 3
    assert not any(sim_cluster.unschedulable.values())  # both uncordoned
    assert rollout.status == "succeeded" and "2 failed" in rollout.reason  # within the failure budget of 5
    assert all(op.changed is False for op in ops)  # the nodes' flags were never written


def test_a_node_an_operator_cordoned_stays_cordoned(kube_sim):
    fleet, sim_cluster = kube_sim(2, [{"kind": "Deployment", "name": "web", "replicas": 2}])
    sim_cluster.set_unschedulable("kc-01", True)
    cluster = Cluster.objects.get(name="kc")
    rollout = drive(create(cluster, drain=True, canary_count=0, batch_size=2, max_unavailable=2))
    assert rollout.status == "succeeded", rollout.reason
    assert sim_cluster.unschedulable == {"kc-01": True, "kc-02": False}
    op = NodeOperation.objects.get(rollout=rollout, node__name="kc-01")
    assert op.drain_state.get("operator_cordoned") is True


def test_abort_while_draining_cancels_and_uncordons(kube_sim):
    fleet, sim_cluster = kube_sim(1, [{"kind": "Deployment", "name": "stuck", "replicas": 1, "max_unavailable": 0}])
    cluster = Cluster.objects.get(name="kc")
    rollout = create(cluster, drain=True, drain_timeout=600, canary_count=1)
    deadline = time.monotonic() + 20
    from rollout import advancer
    from tests.rollout_driver import due_operations, step

    while time.monotonic() < deadline:
        advancer.rollout_advance(rollout_id=rollout.pk)
        for op_id in due_operations(rollout):
            step(op_id)
        op = NodeOperation.objects.filter(rollout=rollout).first()
        if op.step == "drain" and op.drain_state.get("waiting"):
            break
        time.sleep(0.05)
    assert sim_cluster.unschedulable["kc-01"] and op.cordoned
    from tests.integration.test_dashboard import signed_in

    page = signed_in("watcher").get(f"/rollouts/{rollout.pk}/").content.decode()
    assert "draining: 1 pods wait for their disruption budget" in page
    assert ">cordoned</span>" in page and "Each node is cordoned and drained first (up to 600 s)" in page
    shown = signed_in("watcher2").get(f"/api/v1/rollouts/{rollout.pk}/").json()["operations"][0]
    assert shown["activity"].startswith("draining") and shown["cordoned"] is True
    assert shown["drain_state"]["waiting"][0].startswith("default/stuck-")
    transitions.rollout_abort(actor="user:test", rollout=rollout)
    op = run_operation(op.pk)  # its next drain step finds the rollout stopped
    rollout.refresh_from_db()
    assert rollout.status == "aborted"
    assert op.state == "cancelled" and op.changed is False
    assert not sim_cluster.unschedulable["kc-01"]
    assert not Node.objects.get(name="kc-01").cordoned_by_service


def test_without_a_drain_running_pods_keep_their_mode_and_the_audit_reports_drift(kube_sim, settings):
    settings.PIDNS_VERIFY_TIMEOUT = 2
    fleet, sim_cluster = kube_sim(1, [{"kind": "Deployment", "name": "web", "replicas": 2}])
    cluster = Cluster.objects.get(name="kc")
    rollout = drive(create(cluster, drain=False, canary_count=1, auto_rollback=False, max_failures=1))
    op = NodeOperation.objects.get(rollout=rollout)
    assert op.error_code == "verify-timeout"  # a kubelet restart left the running pods isolated
    assert set(pod_modes(fleet, sim_cluster).values()) == {"isolated"}
    call_command("audit", quiet=True, stdout=io.StringIO())
    node = Node.objects.get(name="kc-01")
    assert node.drift and node.observed_pid_namespace == "isolated"


# --- the API -----------------------------------------------------------------------------------------

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_a_cluster_api_connection_keeps_its_secrets_write_only(clients):
    admin = clients["admin"]
    body = {
        "name": "k",
        "plan": "proposal",
        "kube_api_server": "https://10.0.0.1:6443/",
        "kube_ca_cert": CA,
        "kube_token": "s3cret-token",
        "kube_endpoint_template": "tcp://{InternalIP}:2376",
    }
    response = admin.post("/api/v1/clusters/", body, format="json")
    assert response.status_code == 201, response.json()
    shown = response.json()
    assert "kube_token" not in shown and "s3cret-token" not in response.content.decode()
    assert shown["kube_api_server"] == "https://10.0.0.1:6443"
    assert shown["kube_api"] == {"configured": True, "credentials": "token", "synced_at": None, "sync_error": ""}
    assert "s3cret-token" not in clients["viewer"].get("/api/v1/clusters/k/").content.decode()
    assert not AuditEvent.objects.filter(after__icontains="s3cret").exists()
    assert Cluster.objects.get(name="k").kube_token == "s3cret-token"


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("kube_api_server", "http://10.0.0.1:6443", "https://"),
        ("kube_ca_cert", "not a pem", "PEM certificate"),
        ("kube_client_key", "nope", "PEM private key"),
        ("kube_endpoint_template", "tcp://{Secret}:2376", "unknown field 'Secret'"),
        ("kube_endpoint_template", "http://{InternalIP}", "tcp://"),
        ("kube_endpoint_template", "tcp://{InternalIP", "not a template"),
    ],
)
def test_a_bad_api_connection_is_refused_naming_the_field(clients, field, value, words):
    response = clients["admin"].post("/api/v1/clusters/", {"name": "k", field: value}, format="json")
    assert response.status_code == 400
    assert words in " ".join(response.json()[field])
    assert not Cluster.objects.filter(name="k").exists()


def test_sync_over_the_api_needs_an_operator_and_an_api(clients, make_cluster, celery_worker_thread):
    make_cluster("plain")
    assert clients["viewer"].post("/api/v1/clusters/plain/sync/").status_code == 403
    response = clients["operator"].post("/api/v1/clusters/plain/sync/")
    assert response.status_code == 400 and "no Kubernetes API" in response.json()["kube_api_server"][0]
    assert clients["operator"].post("/api/v1/clusters/nowhere/sync/").status_code == 404


def test_sync_over_the_api_runs_on_a_worker(clients, kube_sim, celery_worker_thread):
    fleet, sim_cluster = kube_sim(3, register_it=False)
    make = clients["admin"].post(
        "/api/v1/clusters/",
        {
            "name": "kc",
            "kube_api_server": fleet.api_url(sim_cluster),
            "kube_ca_cert": fleet.kube_ca,
            "kube_token": sim_cluster.token,
        },
        format="json",
    )
    assert make.status_code == 201, make.json()
    response = clients["operator"].post("/api/v1/clusters/kc/sync/")
    assert response.status_code == 202 and response.json() == {"cluster": "kc", "status": "queued"}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and Node.objects.filter(cluster__name="kc").count() < 3:
        time.sleep(0.1)
    assert sorted(Node.objects.filter(cluster__name="kc").values_list("name", flat=True)) == ["kc-01", "kc-02", "kc-03"]
    assert clients["viewer"].get("/api/v1/clusters/kc/").json()["kube_api"]["synced_at"]


def test_a_wrong_token_or_ca_is_a_clear_sync_error(kube_sim):
    fleet, sim_cluster = kube_sim(1, register_it=False)
    from nodes.kubesync import SyncError

    bad_token = Cluster.objects.create(
        name="kc", kube_api_server=fleet.api_url(sim_cluster), kube_ca_cert=fleet.kube_ca, kube_token="wrong"
    )
    with pytest.raises(SyncError, match="401"):
        cluster_sync(actor="user:test", cluster=bad_token)
    assert "401" in Cluster.objects.get(name="kc").kube_sync_error
    no_ca = Cluster.objects.create(name="kc2", kube_api_server=fleet.api_url(sim_cluster), kube_token=sim_cluster.token)
    with pytest.raises(SyncError, match="TLS verification"):
        cluster_sync(actor="user:test", cluster=no_ca)


def test_drain_on_a_cluster_without_an_api_is_refused_on_the_drain_field(clients, make_cluster, make_node):
    cluster = make_cluster("plain")
    make_node(cluster, "n1", flags=ISOLATED_16)
    body = {"cluster": "plain", "intent": "shared", "drain": True}
    response = clients["operator"].post("/api/v1/rollouts/", body, format="json")
    assert response.status_code == 400
    assert "no Kubernetes API" in response.json()["drain"][0]
    body.pop("drain")
    response = clients["operator"].post("/api/v1/rollouts/", body, format="json")
    assert response.status_code == 202 and response.json()["drain"] is False


def test_a_sync_writes_varied_changes_node_by_node_and_like_changes_together(kube_sim):
    import dataclasses

    fleet, sim_cluster = kube_sim(60, [], register_it=False, pods=0)
    cluster = Cluster.objects.create(
        name="kc", kube_api_server=fleet.api_url(sim_cluster), kube_ca_cert=fleet.kube_ca, kube_token=sim_cluster.token
    )
    assert cluster_sync(actor="user:test", cluster=cluster).created == 60
    for index, node in enumerate(fleet.nodes):  # every node relabelled differently (more than 50 kinds)
        node.spec = dataclasses.replace(node.spec, labels={"rack": f"r{index}"})
    assert cluster_sync(actor="user:test", cluster=cluster).updated == 60
    assert Node.objects.get(name="kc-07").labels["rack"] == "r6"
    for name in sim_cluster.nodes:  # the same change everywhere
        sim_cluster.set_unschedulable(name, True)
    assert cluster_sync(actor="user:test", cluster=cluster).updated == 60
    assert Node.objects.filter(cluster=cluster, cordoned=True).count() == 60
    assert Node.objects.get(name="kc-07").labels["rack"] == "r6"
    assert cluster_sync(actor="user:test", cluster=cluster).updated == 0


def test_a_drained_rollout_on_the_real_engine_moves_every_pod_proven_by_ps(run_fleet, real_engine):
    """The kernel's PID namespaces: after the drain, the recreated pods' app containers see their
    sandbox's tini as PID 1; a restart alone would have left them isolated."""
    spec = kube_spec(2, [{"kind": "Deployment", "name": "web", "replicas": 2}, {"kind": "DaemonSet", "name": "agent"}])
    fleet = run_fleet(spec, engine="real", docker_url=real_engine, sync_interval=0.1)
    register(fleet)
    call_command("audit", quiet=True, stdout=io.StringIO())
    sim_cluster = fleet.clusters["kc"]
    assert set(pod_modes(fleet, sim_cluster).values()) == {"isolated"}
    rollout = drive(create(Cluster.objects.get(name="kc"), canary_count=0, batch_size=2, max_unavailable=1))
    assert rollout.status == "succeeded", rollout.reason
    assert rollout.drain is True  # the default on a cluster with an API
    for op in NodeOperation.objects.filter(rollout=rollout):
        assert any("PID 1 is 'tini'" in line for line in op.proof), op.proof
    time.sleep(1)
    modes = pod_modes(fleet, sim_cluster)
    assert len(modes) == 4 and set(modes.values()) == {"shared"}
    assert not any(sim_cluster.unschedulable.values())


def test_a_container_restarting_in_an_undrained_pod_makes_it_mixed_and_the_audit_says_so(kube_sim, settings):
    """A real kubelet restarts a crashed container inside its running pod with the settings it runs
    now: on a node changed without a drain, that pod holds containers of both modes."""
    import docker

    settings.PIDNS_VERIFY_TIMEOUT = 1
    fleet, sim_cluster = kube_sim(1, [{"kind": "Deployment", "name": "web", "replicas": 1}], containers=2)
    cluster = Cluster.objects.get(name="kc")
    drive(create(cluster, drain=False, canary_count=1, auto_rollback=False, max_failures=1))
    assert set(pod_modes(fleet, sim_cluster).values()) == {"isolated"}  # the restart left the pod alone
    node = Node.objects.get(name="kc-01")
    api = docker.APIClient(base_url=node.docker_endpoint.replace("tcp://", "http://"), version="1.24")
    apps = api.containers(filters={"label": ["io.kubernetes.docker.type=container"]})
    api.kill(apps[0]["Id"])  # one app container crashes; the kubelet starts it again
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and set(pod_modes(fleet, sim_cluster).values()) != {"mixed"}:
        time.sleep(0.1)
    assert set(pod_modes(fleet, sim_cluster).values()) == {"mixed"}
    call_command("audit", quiet=True, stdout=io.StringIO())
    node.refresh_from_db()
    assert node.observed_pid_namespace == "mixed" and node.drift
    assert any(d["field"] == "observed_pid_namespace" and d["observed"] == "mixed" for d in node.drift_details)
