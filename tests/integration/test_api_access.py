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
