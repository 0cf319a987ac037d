"""GET /api/v1/fleet/summary/: counts by mode, mechanism and blocker per cluster, in SQL."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

pytestmark = pytest.mark.django_db


def test_summary_counts(viewer, make_cluster, make_node):
    east = make_cluster("east")
    west = make_cluster("west", plan="upstream")
    make_node(east, "e1")
    make_node(east, "e2", flags={"enable-cri": "false"})
    make_node(east, "e3", kubelet="v1.7.2", docker="1.11.2")
    make_node(east, "e4", kubelet="v1.7.2", docker="1.12.6")
    make_node(west, "w1", kubelet="v1.8.0", docker="17.03.1-ce")
    body = viewer.get("/api/v1/fleet/summary/").json()
    assert body["total"] == 5
    assert body["by_pid_namespace"] == {"isolated": 3, "shared": 2}
    assert body["by_mechanism"] == {"cri": 4, "dockertools": 1}
    assert body["blockers_to_shared"] == {"DOCKER_TOO_OLD": 1}
    assert body["blockers_to_isolated"] == {"ROLLBACK_REQUIRES_DOWNGRADE": 1}
    assert body["by_rollback_method"] == {"downgrade": 1, "kubelet-flag": 1, "not-needed": 3}
    by_name = {c["name"]: c for c in body["clusters"]}
    assert by_name["east"]["total"] == 4 and by_name["east"]["plan"] == "proposal"
    assert by_name["west"]["by_pid_namespace"] == {"isolated": 1}
    only_west = viewer.get("/api/v1/fleet/summary/?cluster=west").json()
    assert only_west["total"] == 1 and [c["name"] for c in only_west["clusters"]] == ["west"]


def test_summary_unknown_cluster_is_400(viewer):
    response = viewer.get("/api/v1/fleet/summary/?cluster=nowhere")
    assert response.status_code == 400 and "cluster" in response.json()


def test_summary_query_count_is_constant(viewer, make_cluster, make_node):
    make_node(make_cluster("c0"), "n0")

    def count():
        with CaptureQueriesContext(connection) as ctx:
            viewer.get("/api/v1/fleet/summary/")
        return len(ctx.captured_queries)

    small = count()
    for i in range(1, 6):
        cluster = make_cluster(f"c{i}", plan="upstream" if i % 2 else "proposal")
        for j in range(10):
            make_node(cluster, f"n{j}", kubelet=f"v1.{6 + j % 6}.0", docker="17.03.1-ce" if j % 2 else "1.11.2")
    assert count() == small


def _truth():
    from django.db.models import Count

    from nodes.models import COUNTED_COLUMNS, Node

    rows = Node.objects.order_by().values(*COUNTED_COLUMNS).annotate(n=Count("id"))
    return {tuple(row[c] for c in COUNTED_COLUMNS): row["n"] for row in rows}


def _kept():
    from nodes.models import COUNTED_COLUMNS
    from nodes.selectors import node_counts

    return {tuple(row[c] for c in COUNTED_COLUMNS): row["n"] for row in node_counts()}


def test_kept_counts_follow_every_kind_of_write(make_cluster, make_node):
    """The overview reads counts the database keeps; every way nodes are written keeps them equal
    to a GROUP BY over the nodes: creation, updates through the services and in bulk, a plan change
    that re-decides a cluster, deletion of a node and of a whole cluster, and folding."""
    from nodes import services
    from nodes.models import Node, NodeCount
    from nodes.selectors import node_counts_compact

    east, west = make_cluster("east"), make_cluster("west")
    for i in range(6):
        make_node(east, f"e{i}", kubelet=f"v1.{6 + i % 3}.0", docker="17.03.1-ce" if i % 2 else "1.12.6")
        make_node(west, f"w{i}", flags={"enable-cri": "false"} if i % 2 else {})
    assert _kept() == _truth() and sum(_truth().values()) == 12
    services.node_update(actor="test", node=Node.objects.get(name="e0"), kubelet_flags={"enable-cri": "false"})
    assert _kept() == _truth()
    Node.objects.filter(cluster=west).update(drift=True)
    assert _kept() == _truth() and sum(n for key, n in _kept().items() if key[-1]) == 6
    services.cluster_update(actor="test", cluster=east, plan="upstream")
    assert _kept() == _truth()
    services.node_delete(actor="test", node=Node.objects.get(name="w0"))
    assert _kept() == _truth()
    rows_before = NodeCount.objects.count()
    node_counts_compact()
    assert _kept() == _truth() and NodeCount.objects.count() == len(_truth()) < rows_before
    for node in Node.objects.filter(cluster=west):
        services.node_delete(actor="test", node=node)
    services.cluster_delete(actor="test", cluster=west)
    assert _kept() == _truth()
    node_counts_compact()
    assert NodeCount.objects.filter(cluster_id=west.pk).count() == 0  # its nodes are gone: nothing left
    assert _kept() == _truth()


def test_an_update_that_changes_no_counted_column_adds_no_row(make_cluster, make_node):
    from nodes.models import Node, NodeCount

    make_node(make_cluster("east"), "e1")
    rows = NodeCount.objects.count()
    Node.objects.update(audit_error="", reachable=True)
    assert NodeCount.objects.count() == rows


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_and_folding_lose_no_change(make_cluster, make_node):
    """Writers in several threads (each its own database connection) change nodes while another
    thread folds the counts again and again: no change is lost or counted twice."""
    import threading

    from django.db import connection

    from nodes.models import Node
    from nodes.selectors import node_counts_compact

    cluster = make_cluster("busy")
    for i in range(40):
        make_node(cluster, f"n{i}")
    ids = list(Node.objects.values_list("id", flat=True))
    stop = threading.Event()
    errors: list[BaseException] = []

    def write(offset: int) -> None:
        try:
            for round_ in range(30):
                chunk = ids[offset::4]
                Node.objects.filter(id__in=chunk).update(drift=round_ % 2 == 0, kubelet_minor=f"1.{round_ % 5}")
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)
        finally:
            connection.close()

    def fold() -> None:
        try:
            while not stop.is_set():
                node_counts_compact()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    folder = threading.Thread(target=fold)
    folder.start()
    writers = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    folder.join()
    assert not errors
    assert _kept() == _truth()
