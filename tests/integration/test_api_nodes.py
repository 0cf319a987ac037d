"""Clusters and nodes through the API: validation, decisions, filters, constant query counts."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.models import AuditEvent
from nodes import services
from nodes.models import Node

pytestmark = pytest.mark.django_db


def node_body(**overrides):
    body = {
        "cluster": "east",
        "name": "node-1",
        "kubelet_version": "v1.6.4",
        "runtime_version": "1.12.6",
        "kubelet_flags": {"--enable-cri": "false"},
        "labels": {"pool": "general", "topology.kubernetes.io/zone": "a"},
        "docker_endpoint": "tcp://10.0.0.5:2376",
        "pause_image": "k8s.gcr.io/pause:3.1",
    }
    body.update(overrides)
    return body


def test_create_node_embeds_its_decision(admin, make_cluster):
    make_cluster("east")
    response = admin.post("/api/v1/nodes/", node_body(), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["kubelet_flags"] == {"enable-cri": "false"}  # leading dashes are dropped
    assert body["pid_namespace"] == "isolated"
    assert body["decision"]["mechanism"] == "dockertools"
    assert [r["code"] for r in body["decision"]["reasons"]] == ["CRI_DISABLED"]
    assert body["shared_blocker"] == "" and body["kubelet_minor"] == "1.6"
    event = AuditEvent.objects.get(verb="create", object_type="node")
    assert event.actor == "token:admin-user"
    assert event.after["name"] == "node-1"


@pytest.mark.parametrize(
    "field, value",
    [
        ("name", "Node_1"),
        ("cluster", "nowhere"),
        ("kubelet_version", "one.six"),
        ("runtime_version", "1.12.6 beta"),
        ("container_runtime", "lxc"),
        ("docker_endpoint", "http://10.0.0.5:2376"),
        ("docker_endpoint", "tcp://10.0.0.5"),
        ("docker_endpoint", "tcp://10.0.0.5:99999"),
        ("docker_endpoint", "unix://relative/path"),
        ("labels", {"pool": {"nested": "map"}}),
        ("labels", ["pool"]),
        ("labels", {"bad key!": "x"}),
        ("kubelet_flags", {"enable-cri": "sometimes"}),
        ("pause_image", "pause image"),
        ("docker_api_version", "v1.24"),
        ("labels", {"pool": "a\u0000b"}),
    ],
)
def test_bad_node_fields_are_400_naming_the_field(admin, make_cluster, field, value):
    make_cluster("east")
    response = admin.post("/api/v1/nodes/", node_body(**{field: value}), format="json")
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert not Node.objects.exists()


def test_duplicate_node_name_in_cluster_is_400(admin, make_cluster, make_node):
    make_node(make_cluster("east"), "node-1")
    response = admin.post("/api/v1/nodes/", node_body(), format="json")
    assert response.status_code == 400
    assert Node.objects.count() == 1


def test_updating_facts_recomputes_the_decision(admin, make_cluster, make_node):
    node = make_node(make_cluster("east"), "node-1", flags={"enable-cri": "false"})
    assert node.pid_namespace == "isolated"
    response = admin.patch(f"/api/v1/nodes/{node.pk}/", {"kubelet_flags": {}}, format="json")
    assert response.status_code == 200
    assert response.json()["pid_namespace"] == "shared"
    event = AuditEvent.objects.filter(verb="update", object_type="node").get()
    assert event.before["kubelet_flags"] == {"enable-cri": "false"} and event.after["kubelet_flags"] == {}


def test_changing_the_cluster_plan_redecides_its_nodes(admin, make_cluster, make_node):
    cluster = make_cluster("east")
    node = make_node(cluster, "node-1", kubelet="v1.6.4", docker="1.13.1")
    assert node.pid_namespace == "shared"
    response = admin.patch(f"/api/v1/clusters/{cluster.pk}/", {"plan": "upstream"}, format="json")
    assert response.status_code == 200
    node.refresh_from_db()
    assert node.pid_namespace == "isolated"
    detail = admin.get(f"/api/v1/nodes/{node.pk}/").json()
    assert detail["decision"]["plan"] == "upstream"


def test_node_without_facts_has_no_decision(admin, make_cluster):
    cluster = make_cluster("east")
    node = services.node_create(
        actor="test", cluster=cluster, name="bare", docker_endpoint="unix:///var/run/docker.sock"
    )
    detail = admin.get(f"/api/v1/nodes/{node.pk}/").json()
    assert detail["decision"] is None
    assert detail["pid_namespace"] == "unknown"
    assert "kubelet version" in detail["decision_error"]


def test_cluster_with_nodes_cannot_be_deleted(admin, make_cluster, make_node):
    cluster = make_cluster("east")
    make_node(cluster, "node-1")
    response = admin.delete(f"/api/v1/clusters/{cluster.pk}/")
    assert response.status_code == 409
    assert "still has nodes" in str(response.json())
    empty = make_cluster("empty")
    assert admin.delete(f"/api/v1/clusters/{empty.pk}/").status_code == 204


@pytest.fixture
def fleet(make_cluster, make_node):
    east = make_cluster("east")
    west = make_cluster("west", plan="upstream")
    make_node(east, "e1", labels={"pool": "gpu"})
    make_node(east, "e2", flags={"enable-cri": "false"}, labels={"pool": "general"})
    make_node(east, "e3", kubelet="v1.7.2", docker="1.11.2")
    make_node(west, "w1", kubelet="v1.8.0", docker="17.03.1-ce")
    make_node(west, "w2", kubelet="v1.12.1", docker="18.06.1-ce", labels={"pool": "gpu"})
    services.node_create(actor="test", cluster=east, name="r1", kubelet_version="v1.6.4", container_runtime="cri-o")


@pytest.mark.parametrize(
    "query, names",
    [
        ("cluster=west", ["w1", "w2"]),
        ("pid_namespace=shared", ["e1", "r1"]),
        ("pid_namespace=per-pod", ["w2"]),
        ("container_runtime=cri-o", ["r1"]),
        ("kubelet_minor=1.6", ["e1", "e2", "r1"]),
        # As the dashboard shows them, in any case, or as whole versions: the same nodes.
        ("kubelet_minor=v1.6", ["e1", "e2", "r1"]),
        ("kubelet_minor=V1.6", ["e1", "e2", "r1"]),
        ("kubelet_minor=v1.6.4", ["e1", "e2", "r1"]),
        ("kubelet_minor=1.12", ["w2"]),
        ("runtime_line=17.03", ["w1"]),
        ("runtime_line=17.03.1-ce", ["w1"]),
        ("runtime_line=Docker 1.11", ["e3"]),
        ("runtime_line=1.11.2", ["e3"]),
        ("runtime_line=CRI-O", ["r1"]),
        ("cluster=WEST", ["w1", "w2"]),
        ("mechanism=dockertools", ["e2"]),
        ("label=pool=gpu", ["e1", "w2"]),
        ("label=pool", ["e1", "e2", "w2"]),
        ("label=pool=gpu&cluster=east", ["e1"]),
        ("shared_blocker=DOCKER_TOO_OLD", ["e3"]),
        ("name=w", ["w1", "w2"]),
    ],
)
def test_node_filters(viewer, fleet, query, names):
    response = viewer.get(f"/api/v1/nodes/?{query}")
    assert response.status_code == 200
    assert sorted(n["name"] for n in response.json()["results"]) == names


@pytest.mark.parametrize("query, field", [("pid_namespace=sideways", "pid_namespace"), ("label==x", "label")])
def test_bad_filter_is_400(viewer, fleet, query, field):
    response = viewer.get(f"/api/v1/nodes/?{query}")
    assert response.status_code == 400
    assert field in response.json()


def test_node_list_paginates(viewer, fleet):
    body = viewer.get("/api/v1/nodes/?page_size=2&ordering=name").json()
    assert body["count"] == 6
    assert [n["name"] for n in body["results"]] == ["e1", "e2"]
    assert body["next"]


def _queries(client, url):
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_node_list_query_count_is_constant(viewer, make_cluster, make_node):
    clusters = [make_cluster(f"c{i}") for i in range(3)]
    make_node(clusters[0], "n0")
    small = _queries(viewer, "/api/v1/nodes/?page_size=100")
    for i in range(60):
        make_node(clusters[i % 3], f"m{i}", labels={"i": str(i)})
    large = _queries(viewer, "/api/v1/nodes/?page_size=100")
    assert small == large


def test_cluster_list_query_count_is_constant(viewer, make_cluster, make_node):
    make_cluster("c0")
    small = _queries(viewer, "/api/v1/clusters/")
    for i in range(1, 20):
        make_node(make_cluster(f"c{i}"), "n")
    assert _queries(viewer, "/api/v1/clusters/") == small
    assert viewer.get("/api/v1/clusters/?name=c3").json()["results"][0]["node_count"] == 1


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/api/v1/nodes/", {"cluster": "pr\x00od", "name": "n1"}),
        ("/api/v1/clusters/", {"name": "c9", "docker_credential": "cr\x00ed"}),
        ("/api/v1/rollouts/preview/", {"cluster": "pr\x00od", "intent": "shared"}),
        ("/api/v1/rollouts/", {"cluster": "x" * 300, "intent": "shared"}),
        ("/api/v1/audits/", {"cluster": "pr\x00od"}),
    ],
)
def test_names_the_database_cannot_hold_are_refused_not_crashed(clients, url, body):
    response = clients["admin"].post(url, body, format="json")
    assert response.status_code == 400, response.content
    field = "docker_credential" if "credential" in str(body) else "cluster"
    assert re.search("does not exist|must not contain NUL characters", str(response.json()[field]))


def test_versions_sort_in_version_order_in_the_api_and_the_dashboard(clients, make_cluster, make_node):
    from tests.integration.test_dashboard import signed_in

    cluster = make_cluster("sorting")
    make_node(cluster, "ten", kubelet="v1.10.0", docker="17.03.1-ce")
    make_node(cluster, "six", kubelet="v1.6.4", docker="1.12.6")
    make_node(cluster, "seven-beta", kubelet="v1.7.0-beta.2", docker="1.13.1")
    make_node(cluster, "seven", kubelet="v1.7.0", docker="1.9.1")
    make_node(cluster, "unknown", kubelet="", docker="")
    names = [n["name"] for n in clients["viewer"].get("/api/v1/nodes/?ordering=kubelet_version").json()["results"]]
    assert names == ["unknown", "six", "seven-beta", "seven", "ten"]
    names = [n["name"] for n in clients["viewer"].get("/api/v1/nodes/?ordering=-runtime_version").json()["results"]]
    assert names == ["ten", "seven-beta", "six", "seven", "unknown"]
    body = signed_in("vera").get("/nodes/?ordering=-kubelet_version").content.decode()
    assert [body.index(f">{n}<") for n in ("ten", "seven", "seven-beta", "six")] == sorted(
        body.index(f">{n}<") for n in ("ten", "seven", "seven-beta", "six")
    )
    assert "kubelet_order" not in clients["viewer"].get("/api/v1/nodes/").content.decode()
