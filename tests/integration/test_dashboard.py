"""Dashboard pages: sign-in with CSRF, roles on the server, what each page shows, query counts."""

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.roles import role_set
from nodes import services
from nodes.models import Node

pytestmark = pytest.mark.django_db


def user(name, role=None, password="correct horse battery staple"):
    account = get_user_model().objects.create_user(username=name, password=password)
    if role:
        role_set(user=account, role=role)
    return account


def signed_in(name, role="viewer"):
    user(name, role)
    client = Client()
    client.login(username=name, password="correct horse battery staple")
    return client


def two_clusters(make_cluster, make_node):
    """east (proposal): a 1.6 CRI node, a 1.6 dockertools node, a 1.7 node on Docker 1.11;
    west (upstream): a 1.8 node on Docker 17.03."""
    east = make_cluster("east")
    west = make_cluster("west", plan="upstream")
    make_node(east, "e1")
    make_node(east, "e2", flags={"enable-cri": "false"})
    make_node(east, "e3", kubelet="v1.7.2", docker="1.11.2")
    make_node(west, "w1", kubelet="v1.8.0", docker="17.03.1-ce")
    return east, west


@pytest.fixture
def fleet(make_cluster, make_node):
    return two_clusters(make_cluster, make_node)


def test_anonymous_is_sent_to_sign_in(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/login/?next=/"
    assert client.get("/nodes/").status_code == 302


def test_sign_in_needs_csrf_and_the_right_password():
    user("alice", "viewer")
    client = Client(enforce_csrf_checks=True)
    page = client.get("/login/")
    assert page.status_code == 200 and b'name="csrfmiddlewaretoken"' in page.content
    without_token = client.post("/login/", {"username": "alice", "password": "correct horse battery staple"})
    assert without_token.status_code == 403
    token = client.cookies["csrftoken"].value
    wrong = client.post("/login/", {"username": "alice", "password": "nope", "csrfmiddlewaretoken": token})
    assert b"do not match" in wrong.content
    ok = client.post(
        "/login/",
        {
            "username": "alice",
            "password": "correct horse battery staple",
            "csrfmiddlewaretoken": token,
            "next": "/nodes/",
        },
    )
    assert ok.status_code == 302 and ok["Location"] == "/nodes/"
    assert client.get("/nodes/").status_code == 200
    assert client.post("/logout/", {"csrfmiddlewaretoken": client.cookies["csrftoken"].value}).status_code == 302
    assert client.get("/").status_code == 302


def test_a_user_without_a_role_is_forbidden(fleet):
    client = signed_in("nobody", role=None)
    assert client.get("/").status_code == 403
    assert client.get("/nodes/").status_code == 403


def test_overview_shows_modes_clusters_and_blockers(fleet):
    body = signed_in("viewer").get("/").content.decode()
    assert "4 nodes by decided PID namespace" in body
    assert 'href="/nodes/?cluster=east"' in body and "upstream" in body
    assert "<code>DOCKER_TOO_OLD</code></a> 1" in body  # e3: Docker 1.11 cannot share
    assert 'href="/nodes/?cluster=east&amp;shared_blocker=DOCKER_TOO_OLD"' in body
    assert "No node is in drift." in body and "No rollout is active." in body


def test_node_list_filters_and_sorts(fleet):
    client = signed_in("viewer")
    body = client.get("/nodes/?cluster=east&pid_namespace=isolated&ordering=-name").content.decode()
    assert "2 nodes" in body
    assert body.index(">e3<") < body.index(">e2<")
    assert ">e1<" not in body and ">w1<" not in body
    bad = client.get("/nodes/?pid_namespace=sideways").content.decode()
    assert "0 nodes" in bad and "pid_namespace" in bad


def test_node_page_explains_the_decision(fleet):
    east, _ = fleet
    node = east.nodes.get(name="e2")
    body = signed_in("viewer").get(f"/nodes/{node.pk}/").content.decode()
    assert "CRI_DISABLED" in body and "dockertools" in body
    assert "Never read." in body and "No rollout has touched this node." in body
    assert signed_in("other").get("/nodes/999999/").status_code == 404


def test_node_without_facts_says_why(make_cluster):
    node = services.node_create(actor="test", cluster=make_cluster("paper"), name="bare")
    body = signed_in("viewer").get(f"/nodes/{node.pk}/").content.decode()
    assert "No decision yet: the kubelet version is not known yet." in body


def _queries(client, url):
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize(
    "url",
    [
        "/",
        "/nodes/",
        "/nodes/?cluster=c1&pid_namespace=shared",
        "/nodes/?kubelet_minor=1.6&runtime_line=1.12&drift=false",
        "/what-if/?cluster=c1&kubelet_version=v1.9.0&plan=upstream",
        "/audits/",
        "/rollouts/",
        "/rollouts/new/",
        "/events/",
        "/events/?object_type=node&actor__icontains=test",
    ],
)
def test_pages_use_a_constant_number_of_queries(make_cluster, make_node, url):
    client = signed_in("viewer")
    first = make_cluster("c1")
    make_node(first, "n0")
    small = _queries(client, url)
    for i in range(2, 6):
        cluster = make_cluster(f"c{i}")
        for j in range(12):
            make_node(cluster, f"n{j}", kubelet=f"v1.{6 + j % 4}.0", flags={"enable-cri": "false"} if j % 2 else None)
            make_node(first, f"m{i}-{j}", kubelet=f"v1.{6 + j % 4}.0")
    assert _queries(client, url) == small


def test_node_page_says_what_would_change_it_and_links_a_rollout(fleet):
    east, _ = fleet
    e2 = east.nodes.get(name="e2")
    e3 = east.nodes.get(name="e3")
    operator = signed_in("olga", "operator")
    body = operator.get(f"/nodes/{e2.pk}/").content.decode()
    assert "<strong>To shared</strong>:" in body
    assert "set <code>--enable-cri=true</code> and restart the kubelet" in body
    assert '/rollouts/new/?cluster=east&amp;intent=shared&amp;nodes=e2"' in body
    assert " ".join(body.split()).count("<strong>To isolated</strong>: nothing to do: it already is") == 1
    blocked = operator.get(f"/nodes/{e3.pk}/").content.decode()
    assert '<span class="block">blocked</span> — <code>DOCKER_TOO_OLD</code>' in blocked
    form = operator.get("/rollouts/new/?cluster=east&intent=shared&nodes=e2").content.decode()
    assert '<option value="east" selected>' in form and ">e2</textarea>" in form
    assert "plan a rollout" not in signed_in("vera").get(f"/nodes/{e2.pk}/").content.decode()


def test_repeated_failed_sign_ins_lock_that_user_name_out_for_a_while(settings):
    from core.models import SignInThrottle

    settings.PIDNS_LOGIN_MAX_FAILURES = 3
    settings.PIDNS_LOGIN_LOCKOUT_SECONDS = 600
    user("bob", "viewer")
    user("carol", "viewer")
    client = Client()
    for _ in range(3):
        wrong = client.post("/login/", {"username": "bob", "password": "guess"})
        assert "do not match" in wrong.content.decode()
    right = client.post("/login/", {"username": "BOB", "password": "correct horse battery staple"})
    assert right.status_code == 200 and "try again in 10 minutes" in right.content.decode()
    assert client.get("/").status_code == 302  # not signed in
    other = Client().post("/login/", {"username": "carol", "password": "correct horse battery staple"})
    assert other.status_code == 302  # another user name is not affected
    SignInThrottle.objects.update(until=timezone.now())  # as when the lockout ends
    assert client.post("/login/", {"username": "bob", "password": "correct horse battery staple"}).status_code == 302
    # The admin's sign-in counts the same way.
    admin_client = Client()
    for _ in range(4):
        admin_client.post("/admin/login/", {"username": "root", "password": "guess"})
    refused = admin_client.post("/admin/login/", {"username": "root", "password": "guess"}).content.decode()
    assert "Too many sign-in attempts" in refused


def test_a_selection_of_nodes_opens_the_plan_form_with_exactly_them(fleet):
    client = signed_in("olga", "operator")
    listing = client.get("/nodes/?cluster=east").content.decode()
    assert 'name="node_id"' in listing and "Plan a rollout of the selected nodes" in listing
    e1, e2 = Node.objects.get(name="e1"), Node.objects.get(name="e2")
    page = client.get("/rollouts/new/", {"node_id": [e1.pk, e2.pk]}).content.decode()
    assert 'value="east" selected' in page and ">e1 e2</textarea>" in page
    w1 = Node.objects.get(name="w1")
    mixed = client.get("/rollouts/new/", {"node_id": [e1.pk, w1.pk]}).content.decode()
    assert "the selected nodes are in 2 clusters (east, west)" in mixed


def test_drift_is_adopted_from_the_node_page_by_an_operator_only(fleet):
    from core.models import AuditEvent

    node = Node.objects.get(name="e2")
    Node.objects.filter(pk=node.pk).update(
        desired_flags={"enable-cri": "true"},
        observed_via="audit",
        observed_at="2026-12-01T00:00:00Z",
        drift=True,
        drift_details=[{"field": "kubelet_flags", "key": "enable-cri", "desired": "true", "observed": "false"}],
    )
    viewer = signed_in("vera")
    assert "Adopt what the node has" not in viewer.get(f"/nodes/{node.pk}/").content.decode()
    assert viewer.post(f"/nodes/{node.pk}/adopt/").status_code == 403
    operator = signed_in("olga", "operator")
    page = operator.get(f"/nodes/{node.pk}/").content.decode()
    assert "Adopt what the node has" in page and "Put it back" in page
    assert "intent=shared" in page and "nodes=e2" in page  # the put-back rollout, prefilled
    response = operator.post(f"/nodes/{node.pk}/adopt/")
    assert response.status_code == 302
    node.refresh_from_db()
    assert node.desired_flags == {"enable-cri": "false"} and not node.drift
    assert node.desired_source == "adopted from the node by user:olga"
    event = AuditEvent.objects.get(verb="adopt-observed")
    assert event.before["desired_flags"] == {"enable-cri": "true"} and event.after["drift"] == []
    prefilled = operator.get(
        "/rollouts/new/", {"cluster": "east", "nodes": "e2", "intent": "shared", "canary_count": "0"}
    ).content.decode()
    assert ">e2</textarea>" in prefilled and 'name="canary_count" type="number" min="0" value="0"' in prefilled


def test_a_clusters_history_counts_each_node_as_its_last_reading(fleet):
    from datetime import timedelta

    from nodes import selectors
    from nodes.models import NodeObservation

    east, _ = fleet
    now = timezone.now()
    e1, e2, e3 = (Node.objects.get(name=n) for n in ("e1", "e2", "e3"))

    def seen(node, hours_ago, mode, drift=False):
        NodeObservation.objects.create(
            node=node,
            observed_at=now - timedelta(hours=hours_ago),
            reachable=True,
            observed_pid_namespace=mode,
            drift=drift,
        )

    seen(e1, 30, "isolated")  # before the range: counts from the start
    seen(e1, 10, "shared")  # a rollout made it shared ten hours ago
    seen(e2, 20, "isolated")
    seen(e2, 5, "isolated", drift=True)
    points = selectors.cluster_history(east, "24h", now=now)
    assert len(points) == 24
    assert points[0]["modes"] == {"isolated": 1} and points[0]["drift"] == 0  # e1 only; e2 not read yet
    assert points[5]["modes"] == {"isolated": 2}  # 18 h ago: e2 was read 20 h ago
    assert points[15]["modes"] == {"shared": 1, "isolated": 1}  # 8 h ago
    assert points[-1]["modes"] == {"shared": 1, "isolated": 1} and points[-1]["drift"] == 1
    assert e3.pk not in {o.node_id for o in NodeObservation.objects.all()}

    page = signed_in("viewer").get("/clusters/east/history/?range=24h").content.decode()
    assert 'data-testid="history-chart"' in page and "UTC" in page and "h ago)" in page
    assert "at the last, 1 shared, 1 isolated; 1 drifting" in page
    assert signed_in("viewer2").get("/clusters/nowhere/history/").status_code == 404
    empty = signed_in("viewer4").get("/clusters/west/history/").content.decode()
    assert 'data-testid="history-empty"' in empty and 'data-testid="history-chart"' not in empty
    assert "last 7d" in signed_in("viewer3").get("/clusters/east/history/?range=bogus").content.decode()
