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
