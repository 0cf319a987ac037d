"""Feature gates over the API, the dashboard and the command line: validation, the catalog, desired
gates per cluster with node settings over them, and the upgrade check."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from drivers.base import ObservedFacts
from nodes import services
from nodes.models import Node
from nodes.observations import Reading, record_reading
from tests.integration.test_dashboard import signed_in

pytestmark = pytest.mark.django_db


def test_validate_says_whether_the_kubelet_would_start(viewer):
    response = viewer.post(
        "/api/v1/gates/validate/",
        {"kubelet_version": "v1.19.0-beta.2", "feature_gates": {"PodShareProcessNamespace": "true", "NodeSwap": True}},
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["kubelet_minor"], body["valid"]) == ("1.19", False)
    assert [(p["gate"], p["code"]) for p in body["problems"]] == [
        ("NodeSwap", "GATE_NOT_YET"),
        ("PodShareProcessNamespace", "GATE_REMOVED"),
    ]
    assert {g["name"]: g["recognised"] for g in body["gates"]} == {"NodeSwap": False, "PodShareProcessNamespace": False}
    for body, field in (
        ({"kubelet_version": "v1.x", "feature_gates": {}}, "kubelet_version"),
        ({"kubelet_version": "v1.19.0", "feature_gates": {"A": "maybe"}}, "feature_gates"),
        ({"kubelet_version": "v1.19.0", "feature_gates": ["A"]}, "feature_gates"),
        ({"feature_gates": {}}, "kubelet_version"),
    ):
        bad = viewer.post("/api/v1/gates/validate/", body, format="json")
        assert bad.status_code == 400 and field in bad.json(), bad.json()


def test_the_catalog_searches_and_filters_by_stage_at_a_release(viewer):
    body = viewer.get("/api/v1/gates/catalog/", {"search": "podshare"}).json()
    assert body["releases"] == ["1.3", "1.36"] and body["count"] == 1
    gate = body["gates"][0]
    assert (gate["name"], gate["first_release"], gate["removed_in"], gate["locked_from"]) == (
        "PodShareProcessNamespace",
        "1.10",
        "1.19",
        "1.17",
    )
    alpha = viewer.get("/api/v1/gates/catalog/", {"stage": "alpha", "at": "1.36"}).json()
    assert alpha["count"] == 52 and all(g["at"]["stage"] == "alpha" for g in alpha["gates"])
    assert viewer.get("/api/v1/gates/catalog/", {"at": "one"}).status_code == 400
    assert viewer.get("/api/v1/gates/catalog/", {"stage": "gamma"}).status_code == 400
    assert viewer.get("/api/v1/gates/catalog/NodeSwap/").json()["locked_from"] == "1.34"
    assert viewer.get("/api/v1/gates/catalog/NoSuchGate/").status_code == 404


@pytest.fixture
def gated(make_cluster, make_node):
    cluster = services.cluster_create(
        actor="test", name="gated", plan="upstream", desired_gates={"PodShareProcessNamespace": True}
    )
    for index in range(3):
        node = services.node_create(
            actor="test", cluster=cluster, name=f"n{index}", kubelet_version="v1.18.20", runtime_version="19.03.15"
        )
        # What an audit read there: the gate in the kubelet's drop-in.
        facts = ObservedFacts(
            docker_version="19.03.15",
            api_version="1.40",
            kubelet_version="v1.18.20",
            kubelet_flags={"feature-gates": "PodShareProcessNamespace=true"},
            pause_image="k8s.gcr.io/pause:3.1",
            observed_pid_namespace="isolated",
            kubelet_status="running",
        )
        record_reading(Reading(node, facts=facts), via="audit")
    # One node is told to drop the gate: its own setting goes over the cluster's.
    services.node_update(
        actor="test", node=Node.objects.get(name="n2"), desired_gates={"PodShareProcessNamespace": None}
    )
    return cluster


def test_desired_gates_come_from_the_cluster_with_the_nodes_own_settings_over_them(gated, admin):
    n0, n2 = Node.objects.get(name="n0"), Node.objects.get(name="n2")
    assert n0.desired_gate_map() == {"PodShareProcessNamespace": True} and not n0.drift
    assert n2.desired_gate_map() == {} and n2.drift  # its drop-in still has the gate the service does not want
    assert n2.drift_details[0]["field"] == "feature_gates"
    detail = admin.get(f"/api/v1/nodes/{n2.pk}/").json()
    assert detail["effective_desired_gates"] == {} and detail["observed_gates"] == {"PodShareProcessNamespace": True}
    assert detail["desired_gates"] == {"PodShareProcessNamespace": None}
    # The cluster stops saying anything about gates: its nodes without settings of their own have no
    # intent for gates any more; n2 still says it wants the gate gone.
    response = admin.patch(f"/api/v1/clusters/{gated.pk}/", {"desired_gates": {}}, format="json")
    assert response.status_code == 200, response.json()
    assert dict(Node.objects.values_list("name", "drift")) == {"n0": False, "n1": False, "n2": True}


def test_the_upgrade_check_says_which_kubelets_would_not_start(gated, viewer):
    response = viewer.post(
        "/api/v1/gates/upgrade-check/", {"cluster": "gated", "kubelet_version": "v1.19.0"}, format="json"
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["current"]["would_not_start"] == 3
    assert body["current"]["summary"].startswith("the kubelet would not start on 3 nodes: PodShareProcessNamespace")
    assert body["current"]["problems"][0]["nodes"] == ["n0", "n1", "n2"]
    assert body["desired"]["would_not_start"] == 2  # n2's desired gates drop it
    same = viewer.post(
        "/api/v1/gates/upgrade-check/", {"cluster": "gated", "kubelet_version": "v1.18.3"}, format="json"
    )
    assert same.json()["current"]["would_not_start"] == 0
    assert same.json()["current"]["no_ops"][0]["gate"] == "PodShareProcessNamespace"
    bad = viewer.post("/api/v1/gates/upgrade-check/", {"cluster": "gated", "kubelet_version": "x"}, format="json")
    assert bad.status_code == 400 and "kubelet_version" in bad.json()


def test_the_gate_pages(gated):
    client = signed_in("vera")
    catalog = client.get("/gates/", {"search": "PodShare", "at": "1.18"}).content.decode()
    assert "PodShareProcessNamespace: alpha 1.10-1.11, beta 1.12-1.16, ga 1.17-1.18, removed in 1.19" in catalog
    assert "ga, default on, locked" in catalog
    bad = client.get("/gates/", {"at": "one"}).content.decode()
    assert "a release line such as 1.19" in bad
    upgrade = client.get("/gates/upgrade-check/", {"cluster": "gated", "kubelet_version": "v1.19.0"}).content.decode()
    assert "The kubelet would not start on 3 nodes" in upgrade
    cluster = client.get("/clusters/gated/gates/").content.decode()
    assert "1 node drifts on gates" in cluster
    node = client.get(f"/nodes/{Node.objects.get(name='n0').pk}/").content.decode()
    assert "Kubelet 1.18 starts with these gates" in node and "Upgraded to 1.19" in node and "would not start" in node
    whatif = client.get("/what-if/", {"cluster": "gated", "kubelet_version": "v1.19.0"}).content.decode()
    assert "kubelet would not start on 3 nodes" in whatif
    assert client.get("/clusters/nowhere/gates/").status_code == 404


def test_the_gates_command(gated, tmp_path, settings):
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("gates", "validate", "--kubelet", "v1.19.0", "PodShareProcessNamespace=true", stdout=out)
    assert exited.value.code == 1 and "GATE_REMOVED" in out.getvalue()
    out = io.StringIO()
    call_command("gates", "validate", "--kubelet", "v1.18.0", "PodShareProcessNamespace=true", stdout=out)
    assert "starts with these gates" in out.getvalue()
    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command(
            "gates", "upgrade-check", "--cluster", "gated", "--to", "v1.19.0", stdout=out, stderr=io.StringIO()
        )
    assert "GATE_REMOVED PodShareProcessNamespace on 3 nodes" in out.getvalue()
    with pytest.raises(CommandError, match="no cluster named"):
        call_command("gates", "upgrade-check", "--cluster", "nowhere", "--to", "v1.19.0")
    # A newer catalog of the same shape replaces the shipped one.
    settings.VAR_DIR = tmp_path
    newer = tmp_path / "newer.json"
    newer.write_text(
        json.dumps(
            {
                "gates": {
                    "BrandNew": {
                        "stages": [{"stage": "alpha", "from": "1.40", "default": False}],
                        "first_release": "1.40",
                    }
                }
            }
        )
    )
    out = io.StringIO()
    call_command("gates", "load-catalog", str(newer), stdout=out)
    assert "installed 1 gates, releases 1.40 to 1.40" in out.getvalue()
    out = io.StringIO()
    call_command("gates", "catalog", stdout=out, stderr=io.StringIO())
    assert out.getvalue().startswith("BrandNew: alpha 1.40-")
    broken = tmp_path / "broken.json"
    broken.write_text('{"gates": []}')
    with pytest.raises(CommandError, match="non-empty 'gates' map"):
        call_command("gates", "load-catalog", str(broken))
