"""Dashboard pages added for operators: the version matrix, what-if, audits (with run-now), and
the live (htmx) parts of the overview and audit pages."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from core.models import AuditEvent
from nodes import selectors, services
from nodes.decisions import runtime_line
from nodes.models import Audit, Node
from tests.integration.test_dashboard import signed_in, two_clusters

pytestmark = pytest.mark.django_db


@pytest.fixture
def fleet(make_cluster, make_node):
    east, west = two_clusters(make_cluster, make_node)
    make_node(west, "w2", kubelet="v1.8.0", docker="17.03.2-ce")
    return east, west


@pytest.mark.parametrize(
    ("runtime", "version", "line"),
    [
        ("docker", "1.12.6", "1.12"),
        ("docker", "1.13.1-cs9", "1.13"),
        ("docker", "17.03.1-ce", "17.03"),
        ("docker", "18.09.0", "18.09"),
        ("docker", "", ""),
        ("docker", "not-a-version", ""),
        ("cri-o", "1.0.0", "cri-o"),
    ],
)
def test_runtime_line(runtime, version, line):
    assert runtime_line(runtime, version) == line


def test_matrix_counts_modes_and_blockers_per_cell(fleet):
    matrix = selectors.version_matrix()
    assert matrix["kubelets"] == ["1.6", "1.7", "1.8"]
    assert matrix["runtimes"] == ["1.11", "1.12", "17.03"]
    cells = {(row["kubelet"], c["runtime"]): c["cell"] for row in matrix["rows"] for c in row["cells"]}
    assert cells[("1.6", "1.12")]["total"] == 2
    assert list(cells[("1.6", "1.12")]["modes"].items()) == [("isolated", 1), ("shared", 1)]
    assert cells[("1.7", "1.11")] == {
        "total": 1,
        "modes": {"isolated": 1},
        "mode": "isolated",
        "blocked": 1,  # Docker 1.11 cannot share
        "switchable": 0,
    }
    assert cells[("1.6", "1.12")]["switchable"] == 1  # e2; e1 is shared already
    assert cells[("1.8", "17.03")]["total"] == 2 and cells[("1.8", "17.03")]["mode"] == "isolated"
    assert cells[("1.8", "17.03")]["switchable"] == 2  # upstream 1.8 opts in with a flag
    assert cells[("1.6", "1.11")] is None


def test_overview_shows_the_matrix_and_a_chart_with_text(fleet):
    body = signed_in("viewer").get("/").content.decode()
    assert 'href="/nodes/?kubelet_minor=1.6&amp;runtime_line=1.12"' in body
    assert "Docker 17.03" in body and "1 isolated, 1 shared" in body
    assert 'role="img" aria-label="east: 1 shared, 2 isolated"' in body


def test_matrix_cell_link_filters_the_node_list(fleet):
    body = signed_in("viewer").get("/nodes/?kubelet_minor=1.8&runtime_line=17.03").content.decode()
    assert "2 nodes" in body and ">w1<" in body and ">e1<" not in body


def test_overview_live_part_is_a_fragment(fleet):
    client = signed_in("viewer")
    response = client.get("/", headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200
    assert body.startswith('<div id="overview-live"') and "<html" not in body
    since = body.split("?since=")[1].split('"')[0]
    assert client.get(f"/?since={since}", headers={"HX-Request": "true"}).status_code == 204
    east, _ = fleet
    Node.objects.filter(cluster=east, name="e1").update(drift=True)
    changed = client.get(f"/?since={since}", headers={"HX-Request": "true"})
    assert changed.status_code == 200 and "e1</a>" in changed.content.decode()


def test_what_if_kubelet_upgrade_under_the_proposal(fleet):
    client = signed_in("viewer")
    events = AuditEvent.objects.count()
    body = client.get("/what-if/?cluster=east&kubelet_version=v1.7.0").content.decode()
    # e2 (1.6, CRI off) becomes shared under the proposal's 1.7; e1 stays shared but its rollback
    # becomes a downgrade; e3 is already 1.7 and stays blocked by Docker 1.11.
    assert "Of 3 nodes" in body
    assert "<strong>1</strong> would change mode (1 isolated → shared)" in body
    assert "<strong>2</strong> would lose automatic rollback" in body
    assert "<strong>1</strong> would be blocked from shared (0 not blocked today)" in body
    assert AuditEvent.objects.count() == events and not Node.objects.filter(kubelet_version="v1.7.0").exists()


def test_what_if_plan_switch_blocks_the_16_nodes(fleet):
    body = signed_in("viewer").get("/what-if/?cluster=east&plan=upstream").content.decode()
    assert "1 shared → isolated" in body
    assert "<strong>3</strong> would be blocked from shared (2 not blocked today)" in body
    assert "SHARING_UNAVAILABLE" in body


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("cluster=east&kubelet_version=banana", "w-kubelet-error", "Kubernetes version"),
        ("cluster=east&docker_version=1.x", "w-docker-error", "Docker version"),
        ("cluster=east&plan=sideways", "w-plan-error", "unknown plan"),
        ("cluster=nowhere&plan=upstream", "w-cluster-error", "no such cluster"),
        ("kubelet_version=v1.7.0", "w-cluster-error", "choose a cluster"),
        ("cluster=east", "alert", "choose a kubelet version"),
    ],
)
def test_what_if_bad_input_names_the_field(fleet, query, field, message):
    response = signed_in("viewer").get(f"/what-if/?{query}")
    body = response.content.decode()
    assert response.status_code == 200
    assert field in body and message in body
    assert "would change mode" not in body


def test_audit_pages_and_run_now_for_operators(fleet, django_capture_on_commit_callbacks):
    viewer = signed_in("viewer")
    assert b"Run audit now" not in viewer.get("/audits/").content
    assert viewer.post("/audits/", {"cluster": "east"}).status_code == 403
    assert Audit.objects.count() == 0

    operator = signed_in("olga", "operator")
    with django_capture_on_commit_callbacks() as callbacks:
        response = operator.post("/audits/", {"cluster": "east"})
    audit = Audit.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/audits/{audit.pk}/"
    assert audit.cluster.name == "east" and audit.requested_by == "user:olga"
    assert len(callbacks) == 1  # the task is sent once the audit is committed

    again = operator.post("/audits/", {"cluster": ""}, follow=True)
    assert Audit.objects.count() == 1 and b"already" in again.content
    assert operator.post("/audits/", {"cluster": "nowhere"}, follow=True).content.count(b"no cluster named") == 1

    page = viewer.get(f"/audits/{audit.pk}/").content.decode()
    assert (
        "Audit 1 of east".replace("1", str(audit.pk)) in page and "queued" in page and 'hx-trigger="every 1s"' in page
    )
    fragment = viewer.get(f"/audits/{audit.pk}/", headers={"HX-Request": "true"}).content.decode()
    assert fragment.startswith('<div id="audit-live"')
    assert viewer.get("/audits/999999/").status_code == 404


def test_audit_detail_uses_a_constant_number_of_queries(fleet, make_cluster, make_node):
    from django.utils import timezone

    from nodes.models import NodeObservation

    audit = Audit.objects.create(requested_by="test", status="succeeded")
    client = signed_in("viewer")

    def observe():
        for node in Node.objects.filter(observations__isnull=True):
            NodeObservation.objects.create(
                node=node, audit=audit, observed_at=timezone.now(), reachable=False, error_code="unreachable"
            )

    observe()
    with CaptureQueriesContext(connection) as small:
        client.get(f"/audits/{audit.pk}/")
    cluster = make_cluster("big")
    for i in range(30):
        make_node(cluster, f"b{i}")
    observe()
    with CaptureQueriesContext(connection) as large:
        body = client.get(f"/audits/{audit.pk}/").content.decode()
    assert len(large.captured_queries) == len(small.captured_queries)
    assert "<code>unreachable</code> 35" in body


def test_what_if_leaves_nodes_without_facts_undecided(fleet, make_node):
    east, _ = fleet
    make_node(east, "blank", kubelet="", docker="")
    body = signed_in("viewer").get("/what-if/?cluster=east&kubelet_version=v1.7.0").content.decode()
    assert "Of 4 nodes" in body and "1 cannot be decided" in body
    assert "<strong>1</strong> would change mode (1 isolated → shared)" in body


def test_the_fleet_aggregation_is_shared_between_pages_for_a_few_seconds(fleet, settings):
    from django.core.cache import cache

    settings.PIDNS_OVERVIEW_CACHE_SECONDS = 60
    cache.clear()
    client = signed_in("viewer")
    with CaptureQueriesContext(connection) as first:
        assert "5 nodes by decided PID namespace" in client.get("/").content.decode()
    east, _ = fleet
    Node.objects.filter(cluster=east, name="e1").update(drift=True)
    with CaptureQueriesContext(connection) as second:
        body = client.get("/").content.decode()
    # The second page reused the aggregation (the kept counts, the clusters, the drifting nodes, the
    # unread nodes and their count): fewer queries, and the drift is not seen yet.
    assert len(second.captured_queries) == len(first.captured_queries) - 5
    assert "No node is in drift." in body
    cache.clear()  # as when the period ends
    assert "e1</a>" in client.get("/").content.decode()


PAGES = ["/", "/nodes/", "/rollouts/", "/rollouts/new/", "/what-if/", "/audits/", "/events/"]
PARAMS = [
    "cluster", "name", "ordering", "page", "pid_namespace", "kubelet_minor", "runtime_line", "drift", "label",
    "status", "state", "kubelet_version", "docker_version", "plan", "object_type", "actor__icontains",
    "created_at__gte", "since", "nodes", "intent",
]  # fmt: skip


@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(PAGES),
    query=st.dictionaries(
        st.sampled_from(PARAMS),
        st.one_of(
            st.text(max_size=30), st.sampled_from(["\x00", "ea\x00st", "-1", "9" * 30, "v1.7.0", "true", "east"])
        ),
        max_size=5,
    ),
    htmx=st.booleans(),
)
def test_no_query_string_produces_a_server_error(fleet_viewer, path, query, htmx):
    response = fleet_viewer.get(path, query, headers={"HX-Request": "true"} if htmx else {})
    assert response.status_code in (200, 204), (path, query, response.status_code)


@pytest.fixture
def fleet_viewer(fleet):
    return signed_in("fuzzy")


def test_a_live_refresh_after_the_session_ends_sends_the_page_to_sign_in(fleet):
    from django.test import Client

    anonymous = Client()
    headers = {"HX-Request": "true", "HX-Current-URL": "http://testserver/rollouts/7/?state=failed"}
    for url in ("/", "/audits/1/", "/rollouts/7/"):
        response = anonymous.get(url, headers=headers)
        assert response.status_code == 200 and response.content == b""
        assert response["HX-Redirect"] == "/login/?next=%2Frollouts%2F7%2F%3Fstate%3Dfailed"
    preview = anonymous.post("/rollouts/preview/", {"cluster": "east"}, headers=headers)
    assert preview["HX-Redirect"].startswith("/login/?next=")
    assert anonymous.get("/").status_code == 302  # a plain request still gets a plain redirect
    roleless = signed_in("nobody", role=None)
    refreshed = roleless.get("/", headers=headers)
    assert refreshed["HX-Refresh"] == "true"  # the page reloads and shows the 403
    assert roleless.get("/").status_code == 403


def test_overview_scoped_to_one_cluster(fleet, settings):
    settings.PIDNS_OVERVIEW_CACHE_SECONDS = 60  # scopes are cached apart
    client = signed_in("viewer")
    assert "5 nodes by decided PID namespace" in client.get("/").content.decode()
    body = client.get("/?cluster=west").content.decode()
    assert "Fleet overview: west" in body and "2 nodes by decided PID namespace" in body
    assert "Docker 1.12" not in body and "Docker 17.03" in body  # only west's nodes in the matrix
    assert 'href="/nodes/?kubelet_minor=1.8&amp;runtime_line=17.03&amp;cluster=west"' in body
    assert "&amp;cluster=west" in body.split('id="overview-live" hx-get="')[1].split('"')[0]
    unknown = client.get("/?cluster=nowhere").content.decode()
    assert "no cluster named &#x27;nowhere&#x27;; showing the whole fleet" in unknown
    assert "5 nodes by decided PID namespace" in unknown


def test_node_filters_are_picked_from_what_the_fleet_has_and_read_as_shown(fleet):
    """Cluster and release lines are chosen from lists of what exists (no typing a name that finds
    nothing silently); a line written as the table shows it (v1.6) or as a version finds the same
    nodes; the node page shows its labels, each a link to the nodes that share it."""
    import re

    client = signed_in("viewer")
    page = client.get("/nodes/").content.decode()
    clusters = re.search(r'<select id="f-cluster" name="cluster">(.*?)</select>', page).group(1)
    assert '<option value="east">east</option>' in clusters and '<option value="west">west</option>' in clusters
    lines = re.search(r'<select id="f-minor" name="kubelet_minor">(.*?)</select>', page).group(1)
    assert re.findall(r'<option value="([^"]+)"', lines) == ["1.6", "1.7", "1.8"]
    shown = client.get("/nodes/?kubelet_minor=v1.6&cluster=EAST").content.decode()
    typed = client.get("/nodes/?kubelet_minor=1.6&cluster=east").content.decode()
    names = lambda body: re.findall(r'<th scope="row"><a href="/nodes/\d+/">([^<]+)</a>', body)  # noqa: E731
    assert names(shown) == names(typed) and names(typed)
    assert '<option value="1.6" selected>v1.6</option>' in shown  # the filter shows what it applied
    node = Node.objects.filter(cluster__name="east").first()
    services.node_update(actor="test", node=node, labels={"pool": "gpu"})
    detail = client.get(f"/nodes/{node.pk}/").content.decode()
    assert "<code>pool=gpu</code>" in detail and "label=pool%3Dgpu" in detail
    by_label = client.get("/nodes/?label=pool=gpu").content.decode()
    assert names(by_label) == [node.name]


def test_blocker_codes_come_with_what_they_mean(make_cluster, make_node, settings):
    settings.PIDNS_OVERVIEW_CACHE_SECONDS = 0
    old = make_cluster("old")
    make_node(old, "o1", kubelet="v1.7.2", docker="1.11.2")
    client = signed_in("viewer")
    overview = client.get("/").content.decode()
    assert '<code>DOCKER_TOO_OLD</code></a> 1 <span class="muted">(Docker is too old to share a pod' in overview
    nodes = client.get("/nodes/?shared_blocker=DOCKER_TOO_OLD").content.decode()
    assert (
        '<option value="DOCKER_TOO_OLD" selected>Docker is too old to share a pod&#x27;s PID namespace '
        "(DOCKER_TOO_OLD)</option>" in nodes
    )
    assert ">o1</a>" in nodes


def test_the_overview_lists_the_nodes_the_last_audit_could_not_read(make_cluster, make_node, settings, viewer):
    settings.PIDNS_OVERVIEW_CACHE_SECONDS = 0
    lab = make_cluster("lab")
    make_node(lab, "fine")
    gone = make_node(lab, "gone")
    Node.objects.filter(pk=gone.pk).update(
        audit_error_code="unreachable", audit_error="cannot connect to tcp://10.0.0.9:2376: connection refused"
    )
    client = signed_in("viewer")
    body = client.get("/").content.decode()
    assert f'<a href="/nodes/{gone.pk}/">lab/gone</a>: <code>unreachable</code> cannot connect' in body
    assert ">lab/fine</a>" not in body.split('id="unread"')[1].split("</section>")[0]
    assert [n["name"] for n in viewer.get("/api/v1/nodes/?audit_failed=true").json()["results"]] == ["gone"]
    assert [n["name"] for n in viewer.get("/api/v1/nodes/?audit_failed=false").json()["results"]] == ["fine"]
    Node.objects.filter(pk=gone.pk).update(audit_error_code="", audit_error="")
    assert "Every node was read." in client.get("/").content.decode()
