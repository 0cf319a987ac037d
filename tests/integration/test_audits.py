"""Audits: read simulated nodes, record observations, flag drift; via the command, the API and Celery."""

import dataclasses
import io
import os
import time

import pytest
from django.core.management import CommandError, call_command

from core.models import AuditEvent
from nodes import audits, importing, services
from nodes.management.commands.simfleet import register
from nodes.models import Audit, Node, NodeObservation
from tests.conftest import fleet_spec, node_group, subprocess_database_url


def audit_now(**options):
    out = io.StringIO()
    err = io.StringIO()
    call_command("audit", stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def registered(run_fleet, db):
    def make(*groups, plan="proposal", **options):
        fleet = run_fleet(fleet_spec(*groups, plan=plan), **options)
        register(fleet)
        return fleet

    return make


@pytest.mark.parametrize("processes", [1, 2], ids=["threads", "processes"])
def test_audit_command_reads_the_nodes(registered, settings, processes):
    """The same readings whether the nodes are read by threads here or by child processes."""
    settings.PIDNS_AUDIT_PROCESSES, settings.PIDNS_AUDIT_PROCESS_MIN_NODES = processes, 1
    registered(
        node_group("iso-{i}", count=2, kubelet_flags={"enable-cri": "false"}),
        node_group("shr-{i}", count=2),
        node_group("old", docker="1.11.2"),
        node_group("down", faults={"unreachable": True}),
    )
    out, err = audit_now()
    assert "succeeded: 6 nodes read, 2 failed, 0 drifted" in out
    assert "6/6 nodes" in err
    nodes = {n.name: n for n in Node.objects.all()}
    assert nodes["iso-01"].observed_pid_namespace == "isolated"
    assert nodes["iso-01"].pid_namespace == "isolated" and nodes["iso-01"].mechanism == "dockertools"
    assert nodes["shr-01"].observed_pid_namespace == "shared"
    assert nodes["shr-01"].kubelet_version == "v1.6.4" and nodes["shr-01"].docker_api_version == "1.24"
    assert nodes["old"].audit_error_code == "engine-too-old" and nodes["old"].reachable is True
    assert nodes["old"].runtime_version == "1.11.2" and nodes["old"].pid_namespace == "unknown"
    assert "kubelet version" in nodes["old"].decision_error
    assert nodes["down"].audit_error_code == "unreachable" and nodes["down"].reachable is False
    assert NodeObservation.objects.count() == 6
    assert all(not n.drift for n in nodes.values())
    readings = audits._readings(Audit(concurrency=5), audits.default_driver(), list(nodes.values()))
    readings.close()
    assert type(readings).__name__ == ("_ProcessReadings" if processes > 1 else "_ThreadReadings")


def test_drift_is_measured_against_the_desired_state(registered):
    # The kubelet stand-ins' periodic pass would put the hand-made pod back in the node's mode
    # before the audit reads it: keep it from running during this test.
    fleet = registered(
        node_group("a", kubelet_flags={"enable-cri": "false"}),
        node_group("b"),
        node_group("c", pods=1),
        sync_interval=3600,
    )
    # The operator states what the service should hold each node to.
    importing.nodes_import(
        actor="test",
        nodes=[
            {"cluster": "sim", "name": "a", "desired_flags": {"enable-cri": "false"}},
            {"cluster": "sim", "name": "b", "desired_flags": {}},
            {"cluster": "sim", "name": "c", "desired_flags": {}},
        ],
    )
    audit_now(quiet=True)
    assert not Node.objects.filter(drift=True).exists()
    # Behind our back: a flag edited by hand, Docker upgraded, a pod started in another mode.
    a = fleet.node("sim", "a")
    (a.kubelet_dir / "20-pidns.conf").write_text('[Service]\nEnvironment="KUBELET_PIDNS_ARGS="\n')
    b = fleet.node("sim", "b")
    fleet.thread.run(lambda: setattr(b, "spec", dataclasses.replace(b.spec, docker_version="17.03.1-ce")))
    c = fleet.node("sim", "c")
    fleet.thread.run(c.backend.create_pod, "by-hand", "isolated")
    out, _ = audit_now(quiet=True)
    assert "2 drifted" in out
    nodes = {n.name: n for n in Node.objects.all()}
    drift = {name: [(d["field"], d.get("key")) for d in n.drift_details] for name, n in nodes.items()}
    # The flag the service manages is gone; the pods (no kubelet restart, so not recreated) are still
    # isolated, as the desired flags give: only the flag drifts.
    assert nodes["a"].drift_details == [
        {"field": "kubelet_flags", "key": "enable-cri", "desired": "false", "observed": None}
    ]
    # A newer Docker is a change of facts, recorded, not drift from anything the service wants.
    assert drift["b"] == [] and nodes["b"].runtime_version == "17.03.1-ce"
    assert NodeObservation.objects.filter(node=nodes["b"]).latest("observed_at").facts["runtime_version"] == (
        "17.03.1-ce"
    )
    assert drift["c"] == [("observed_pid_namespace", None)] and nodes["c"].observed_pid_namespace == "mixed"
    # The audit log records what was found, once per change of a node's drift, linked to the node.
    found = AuditEvent.objects.filter(verb="drift-found").order_by("object_repr")
    assert [e.object_repr for e in found] == ["sim/a", "sim/c"]
    assert found[0].after["drift"] == nodes["a"].drift_details and found[0].object_id == str(nodes["a"].pk)
    audit_now(quiet=True)
    assert AuditEvent.objects.filter(verb="drift-found").count() == 2  # the same drift is not repeated
    from tests.integration.test_dashboard import signed_in

    page = signed_in("reader").get("/events/", {"verb": "drift-found"}).content.decode()
    assert f'href="/nodes/{nodes["a"].pk}/"' in page and "enable-cri" in page and "{&#x27;" not in page
    (a.kubelet_dir / "20-pidns.conf").write_text('[Service]\nEnvironment="KUBELET_PIDNS_ARGS=--enable-cri=false"\n')
    audit_now(quiet=True)
    cleared = AuditEvent.objects.get(verb="drift-cleared")
    assert cleared.object_repr == "sim/a" and cleared.before["drift"] == nodes["a"].drift_details


def test_a_node_without_a_desired_state_drifts_only_by_its_pods(registered):
    fleet = registered(node_group("a", kubelet_flags={"enable-cri": "false"}), sync_interval=3600)
    audit_now(quiet=True)
    a = Node.objects.get(name="a")
    assert a.desired() is None and not a.drift
    (fleet.node("sim", "a").kubelet_dir / "20-pidns.conf").write_text('[Service]\nEnvironment="KUBELET_PIDNS_ARGS="\n')
    audit_now(quiet=True)
    a.refresh_from_db()
    # Its flags now give shared, its pods (not recreated) are isolated.
    assert [d["field"] for d in a.drift_details] == ["observed_pid_namespace"]


def test_nodes_without_endpoint_are_not_audited(registered, make_cluster, make_node):
    registered(node_group("a"))
    make_node(make_cluster("paper"), "typed-in")
    out, _ = audit_now(quiet=True)
    assert "1 nodes read" in out
    assert Node.objects.get(name="typed-in").last_audit_at is None


def test_cluster_audit_and_unknown_cluster(registered):
    registered(node_group("a"))
    out, _ = audit_now(cluster="sim", quiet=True)
    assert "succeeded" in out
    with pytest.raises(CommandError, match="no cluster named"):
        audit_now(cluster="nowhere")


def test_two_audits_of_the_same_nodes_never_run_at_once(registered):
    registered(node_group("a"))
    first = audits.audit_create(actor="test")
    with pytest.raises(audits.AuditConflict):
        audits.audit_create(actor="test", cluster=first.cluster)
    with pytest.raises(CommandError, match="already queued"):
        audit_now()
    # A second run of the same audit does nothing: the claim is exclusive.
    assert audits.audit_execute(audit_id=first.pk).status == "succeeded"
    assert audits.audit_execute(audit_id=first.pk) is None
    assert NodeObservation.objects.count() == 1


def test_a_node_leased_by_a_running_audit_is_skipped(registered):
    registered(node_group("a"), node_group("b"))
    holder = Audit.objects.create(requested_by="test", status="running")
    from datetime import timedelta

    from django.utils import timezone

    Node.objects.filter(name="a").update(audit_lease=holder, audit_lease_until=timezone.now() + timedelta(minutes=5))
    other = Audit.objects.create(requested_by="test")
    result = audits.audit_execute(audit_id=other.pk)
    assert (result.done, result.skipped) == (1, 1)
    assert list(NodeObservation.objects.values_list("node__name", flat=True)) == ["b"]


def test_a_resumed_audit_skips_nodes_it_already_observed(registered):
    registered(node_group("n-{i}", count=3))
    audit = audits.audit_create(actor="test")
    audits.audit_execute(audit_id=audit.pk)
    NodeObservation.objects.filter(node__name="n-03").delete()
    Audit.objects.filter(pk=audit.pk).update(status="queued", done=2)
    resumed = audits.audit_execute(audit_id=audit.pk)
    assert (resumed.total, resumed.done) == (3, 3)
    assert NodeObservation.objects.filter(audit=audit).count() == 3


def test_observations_api_and_history(registered, viewer):
    registered(node_group("a"))
    audit_now(quiet=True)
    audit_now(quiet=True)
    node = Node.objects.get(name="a")
    body = viewer.get(f"/api/v1/nodes/{node.pk}/observations/").json()
    assert body["count"] == 2
    assert body["results"][0]["observed_pid_namespace"] == "shared"
    assert body["results"][0]["facts"]["kubelet_version"] == "v1.6.4"
    detail = viewer.get(f"/api/v1/nodes/{node.pk}/").json()
    assert detail["observed_pid_namespace"] == "shared" and detail["drift"] is False


@pytest.mark.django_db
def test_audit_api_roles_and_conflict(registered, clients):
    registered(node_group("a"))
    assert clients["viewer"].post("/api/v1/audits/", {}, format="json").status_code == 403
    services.cluster_create(actor="test", name="other")
    bad = clients["operator"].post("/api/v1/audits/", {"cluster": "nowhere", "concurrency": 0}, format="json")
    assert bad.status_code == 400 and set(bad.json()) == {"cluster", "concurrency"}
    Audit.objects.create(requested_by="test", status="running")
    conflict = clients["operator"].post("/api/v1/audits/", {"cluster": "sim"}, format="json")
    assert conflict.status_code == 409 and "/api/v1/audits/" in conflict.json()["audit"]


@pytest.mark.django_db(transaction=True)
def test_api_audit_runs_on_a_celery_worker(run_fleet, clients, celery_worker_thread):
    fleet = run_fleet(fleet_spec(node_group("n-{i}", count=5), node_group("down", faults={"unreachable": True})))
    register(fleet)
    response = clients["operator"].post("/api/v1/audits/", {"cluster": "sim", "concurrency": 3}, format="json")
    assert response.status_code == 202
    url = response.json()["url"]
    assert response["Location"] == url
    deadline = time.monotonic() + 30
    body = clients["viewer"].get(url).json()
    while body["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.2)
        body = clients["viewer"].get(url).json()
    assert body["status"] == "succeeded", body
    assert (body["total"], body["done"], body["failed"], body["progress"]) == (6, 6, 1, 100)
    results = {r["node"]: r for r in body["results"]}
    assert results["down"]["error_code"] == "unreachable"
    assert results["n-01"]["observed_pid_namespace"] == "shared"
    assert clients["viewer"].get("/api/v1/audits/?status=succeeded").json()["count"] == 1


@pytest.mark.django_db(transaction=True)
def test_reconciler_resumes_an_audit_whose_worker_died(run_fleet, celery_worker_thread, settings):
    from datetime import timedelta

    from django.utils import timezone

    from nodes.tasks import reconcile

    fleet = run_fleet(fleet_spec(node_group("n-{i}", count=2)))
    register(fleet)
    stale = timezone.now() - timedelta(minutes=10)
    audit = Audit.objects.create(requested_by="test", status="running", heartbeat_at=stale, started_at=stale)
    reconcile.apply()
    deadline = time.monotonic() + 30
    while Audit.objects.get(pk=audit.pk).status != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.2)
    audit.refresh_from_db()
    assert audit.status == "succeeded" and audit.done == 2 and audit.attempts == 1


@pytest.mark.django_db(transaction=True)
def test_simfleet_command_then_audit_command_show_observed_modes(tmp_path, viewer, settings):
    """The newcomer's path: `manage.py simfleet SPEC --register` in its own process, then `audit`."""
    import subprocess
    import sys

    import yaml

    spec = {
        "clusters": [
            {
                "name": "cmd",
                "plan": "upstream",
                "nodes": [
                    {"name": "u17", "kubelet_version": "v1.7.2", "docker_version": "17.03.1-ce"},
                    {"name": "u18", "kubelet_version": "v1.8.4", "docker_version": "17.03.1-ce"},
                ],
            }
        ]
    }
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(spec))
    url = subprocess_database_url()
    env = {**os.environ, "DATABASE_URL": url}
    child = subprocess.Popen(  # noqa: S603
        [sys.executable, "manage.py", "simfleet", str(path), "--register"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=settings.BASE_DIR,
    )
    try:
        assert child.stdout.readline().strip() == "simfleet ready: 2 nodes"
        out, _ = audit_now(cluster="cmd", quiet=True)
        assert "2 nodes read, 0 failed" in out
        nodes = viewer.get("/api/v1/nodes/?cluster=cmd&ordering=name").json()["results"]
        assert [(n["name"], n["observed_pid_namespace"], n["pid_namespace"]) for n in nodes] == [
            ("u17", "shared", "shared"),
            ("u18", "isolated", "isolated"),
        ]
    finally:
        child.terminate()
        child.wait(timeout=30)


def test_audits_read_the_gates_from_the_kubelet_configuration_and_the_drop_in(registered):
    registered(
        node_group(
            "g",
            kubelet="v1.18.20",
            docker="19.03.15",
            kubelet_flags={"feature-gates": "PodShareProcessNamespace=true"},
            config_gates={"RotateKubeletServerCertificate": True, "PodShareProcessNamespace": False},
        ),
        node_group(
            "refusing",
            kubelet="v1.19.0",
            docker="19.03.15",
            kubelet_flags={"feature-gates": "PodShareProcessNamespace=true"},
        ),
        plan="upstream",
    )
    audit_now(quiet=True)
    node = Node.objects.get(name="g")
    # The drop-in's flag goes over the configuration's setting.
    assert node.observed_gates == {"RotateKubeletServerCertificate": True, "PodShareProcessNamespace": True}
    assert node.ready is True
    refusing = Node.objects.get(name="refusing")
    assert refusing.ready is False  # its kubelet does not start with a gate removed in 1.19
    reading = NodeObservation.objects.filter(node=refusing).latest("observed_at")
    assert reading.facts["kubelet_status"].startswith("failed: unrecognized feature gate: PodShareProcessNamespace")
