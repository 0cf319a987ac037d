"""The API over real HTTP, through the server the quick start and production run (gunicorn): the
test client hides what a WSGI server refuses (a header value that is not a str, say)."""

import pytest
import requests
from rest_framework.authtoken.models import Token

from nodes import services
from rollout.models import NodeOperation

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def api(web_server, clients):
    session = requests.Session()
    session.headers["Authorization"] = f"Token {Token.objects.get(user=clients['admin'].user).key}"
    session.base = f"{web_server}/api/v1"
    return session


def created(session, method, path, status, **body):
    response = session.request(method, f"{session.base}{path}", json=body or None, timeout=30)
    assert response.status_code == status, response.text
    location = response.headers.get("Location")
    return response, location


def test_every_201_and_202_answer_has_a_usable_location(api):
    cases = []
    response, location = created(api, "POST", "/clusters/", 201, name="east", plan="proposal")
    assert response.json()["node_count"] == 0
    cases.append(("cluster", response, location))
    response, location = created(
        api,
        "POST",
        "/nodes/",
        201,
        cluster="east",
        name="n1",
        kubelet_version="v1.6.4",
        runtime_version="1.12.6",
        kubelet_flags={"enable-cri": "false"},
        docker_endpoint="tcp://127.0.0.1:9",
    )
    cases.append(("node", response, location))
    response, location = created(
        api,
        "POST",
        "/credentials/",
        201,
        name="tls",
        ca_cert="-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----",
    )
    cases.append(("credential", response, location))
    response, location = created(api, "POST", "/rollouts/", 202, cluster="east", intent="shared")
    cases.append(("rollout", response, location))
    rollout = response.json()["id"]
    for action in ("start", "pause", "resume", "abort", "rollback"):
        if action == "rollback":
            # As a worker leaves an operation that wrote to its node: a rollback has something to undo.
            NodeOperation.objects.filter(rollout_id=rollout).update(changed=True)
        response, location = created(api, "POST", f"/rollouts/{rollout}/{action}/", 202)
        cases.append((action, response, location))
    response, location = created(api, "POST", "/audits/", 202, cluster="east")
    cases.append(("audit", response, location))
    for what, response, location in cases:
        assert location and location.startswith("http://127.0.0.1:"), (what, location)
        follow = api.get(location, timeout=30)
        assert follow.status_code == 200, (what, location, follow.text)
        assert follow.json()["id"] == response.json()["id"], what


def test_a_conflict_is_a_409_not_a_duplicate(api, make_cluster, make_node):
    cluster = make_cluster("east")
    services.node_create(
        actor="test",
        cluster=cluster,
        name="n1",
        kubelet_version="v1.6.4",
        runtime_version="1.12.6",
        kubelet_flags={"enable-cri": "false"},
        docker_endpoint="tcp://127.0.0.1:9",
    )
    first, _ = created(api, "POST", "/rollouts/", 202, cluster="east", intent="shared")
    second = api.post(f"{api.base}/rollouts/", json={"cluster": "east", "intent": "shared"}, timeout=30)
    assert second.status_code == 409 and "is in unfinished rollout" in second.text
    again = api.post(f"{api.base}/rollouts/{first.json()['id']}/resume/", timeout=30)
    assert again.status_code == 409
    assert again.json() == {"status": ["cannot resume a rollout that is draft"]}
    audit = api.post(f"{api.base}/audits/", json={"cluster": "east"}, timeout=30)
    busy = api.post(f"{api.base}/audits/", json={}, timeout=30)
    assert (audit.status_code, busy.status_code) == (202, 409)
    assert busy.json()["audit"].endswith(f"/api/v1/audits/{audit.json()['id']}/")
