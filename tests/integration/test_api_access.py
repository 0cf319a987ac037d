"""Authentication on every endpoint but health; roles enforced server-side."""

import pytest

pytestmark = pytest.mark.django_db

READ_ENDPOINTS = ["/api/v1/clusters/", "/api/v1/nodes/", "/api/v1/fleet/summary/"]


def test_health_needs_no_authentication(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok"}}


@pytest.mark.parametrize("url", READ_ENDPOINTS)
def test_reads_need_a_token(clients, url):
    response = clients["anon"].get(url)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Token")


def test_evaluate_needs_a_token(clients):
    assert clients["anon"].post("/api/v1/decisions/evaluate/", {}, format="json").status_code == 401


def test_bad_token_is_rejected(client):
    response = client.get("/api/v1/nodes/", HTTP_AUTHORIZATION="Token not-a-real-token")
    assert response.status_code == 401


@pytest.mark.parametrize("url", READ_ENDPOINTS)
def test_user_without_role_is_forbidden(clients, url):
    assert clients["none"].get(url).status_code == 403


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
@pytest.mark.parametrize("url", READ_ENDPOINTS)
def test_every_role_reads(clients, role, url):
    assert clients[role].get(url).status_code == 200


@pytest.mark.parametrize("role, allowed", [("viewer", False), ("operator", False), ("admin", True)])
def test_only_admins_change_the_inventory(clients, role, allowed, make_cluster):
    cluster = make_cluster("east")
    client = clients[role]
    created = client.post("/api/v1/clusters/", {"name": f"c-{role}"}, format="json")
    patched = client.patch(f"/api/v1/clusters/{cluster.pk}/", {"description": "x"}, format="json")
    node = client.post(
        "/api/v1/nodes/",
        {"cluster": "east", "name": f"n-{role}", "kubelet_version": "v1.6.4", "runtime_version": "1.12.6"},
        format="json",
    )
    imported = client.post("/api/v1/nodes/import/", {"nodes": []}, format="json")
    expected = (201, 200, 201, 200) if allowed else (403, 403, 403, 403)
    assert (created.status_code, patched.status_code, node.status_code, imported.status_code) == expected


def test_viewer_can_evaluate(viewer):
    response = viewer.post(
        "/api/v1/decisions/evaluate/", {"kubelet_version": "v1.6.4", "runtime_version": "1.12.6"}, format="json"
    )
    assert response.status_code == 200


def test_schema_and_docs_are_served_offline(admin):
    schema = admin.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/decisions/evaluate/" in schema.content
    docs = admin.get("/api/docs/")
    assert docs.status_code == 200
    body = docs.content.decode()
    assert "swagger-ui" in body and "cdn" not in body.lower()


# --- every route of the API, for every role, generated from the URL configuration ------------------

from drf_spectacular.generators import EndpointEnumerator  # noqa: E402
from rest_framework.request import Request  # noqa: E402
from rest_framework.test import APIRequestFactory  # noqa: E402

from core.roles import ROLES, has_role  # noqa: E402


def _api_endpoints():
    return [
        (path, method, callback)
        for path, _, method, callback in EndpointEnumerator().get_api_endpoints()
        if path.startswith("/api/v1/")
    ]


def _required_role(path, method, callback):
    """The lowest role the view's own permission classes let through for this route and method."""
    view = callback.cls(**getattr(callback, "initkwargs", {}))
    view.action = (getattr(callback, "actions", None) or {}).get(method.lower())
    view.format_kwarg = None
    for role in ROLES:
        view.request = Request(getattr(APIRequestFactory(), method.lower())(path))
        view.request.user = _RoleUser(role)
        if all(p.has_permission(view.request, view) for p in view.get_permissions()):
            return role
    return None


class _RoleUser:
    is_authenticated = True
    is_active = True
    is_superuser = False

    def __init__(self, role):
        self._pidns_role = role

    def get_username(self):
        return "probe"


ENDPOINTS = [(path, method, _required_role(path, method, callback)) for path, method, callback in _api_endpoints()]


def test_the_walk_covers_the_api():
    paths = {path for path, _, _ in ENDPOINTS}
    assert {"/api/v1/rollouts/{pk}/abort/", "/api/v1/nodes/import/", "/api/v1/events/"} <= paths
    assert all(role in ROLES for _, _, role in ENDPOINTS)


@pytest.fixture
def objects(make_cluster, make_node):
    from core.events import event_record
    from nodes.models import Audit, DockerCredential
    from rollout import transitions
    from rollout.strategy import Strategy

    cluster = make_cluster("walk")
    node = make_node(cluster, "n1", flags={"enable-cri": "false"})
    rollout = transitions.rollout_create(
        actor="test", name="walk", cluster=cluster, intent="shared", strategy=Strategy()
    )
    audit = Audit.objects.create(requested_by="test", cluster=cluster)
    credential = DockerCredential.objects.create(name="cred", ca_cert="-----BEGIN CERTIFICATE-----\nx\n")
    event = event_record(actor="test", verb="probe", object_type="node", object_id=node.pk)
    return {
        "clusters": cluster.pk,
        "nodes": node.pk,
        "rollouts": rollout.pk,
        "audits": audit.pk,
        "credentials": credential.pk,
        "events": event.pk,
    }


@pytest.mark.parametrize("path, method, required", ENDPOINTS, ids=[f"{m} {p}" for p, m, _ in ENDPOINTS])
@pytest.mark.parametrize("who", ["anon", "none", *ROLES])
def test_every_route_for_every_role(clients, objects, path, method, required, who):
    collection = path.split("/")[3]
    url = path.replace("{pk}", str(objects.get(collection, 1))).replace("{name}", "walk")
    client = clients[who]
    response = getattr(client, method.lower())(url, {}, format="json")
    if who == "anon":
        assert response.status_code == 401, response.content
    elif who == "none" or not has_role(clients[who].user, required):
        assert response.status_code == 403, response.content
    else:
        assert response.status_code not in (401, 403), response.content
        assert response.status_code < 500, response.content
