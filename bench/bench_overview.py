"""Render the fleet overview over 100,000 nodes and compare with the time of its SQL alone.

The page reads counts the database keeps (nodes per combination of the counted columns), so its
aggregation costs about the same at 100 nodes or 100,000. This measures, in one run: the
aggregation alone against counting the nodes themselves with GROUP BY, and the whole request
through Django (session, auth, view, template) against re-running exactly the SQL it issued.

Uses a scratch database: BENCH_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/pidns_bench,
dropped and created), else a temporary SQLite file. Run: python bench/bench_overview.py [N]
"""

import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench._fleet import scratch_environment  # noqa: E402

scratch = scratch_environment()
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
# The page is measured computing its aggregation every time; the shared cache is measured apart.
os.environ["PIDNS_OVERVIEW_CACHE_SECONDS"] = "0"
RUNS = 7


def median_seconds(action, runs: int = RUNS) -> float:
    action()  # warm: caches, plans
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def populate(n: int) -> None:
    from django.core.management import call_command
    from django.utils import timezone

    from bench._fleet import fleet_rows
    from nodes.models import Audit, Cluster, Node
    from rollout import transitions as services
    from rollout.strategy import Strategy

    clusters = [
        Cluster.objects.get_or_create(name=f"c{i}", plan="upstream" if i == 3 else "proposal")[0] for i in range(4)
    ]
    path = Path(scratch) / "fleet.json"
    path.write_text(json.dumps({"nodes": fleet_rows(n, [c.name for c in clusters])}))
    call_command("import_nodes", str(path), "--quiet", stdout=io.StringIO())
    drifting = list(Node.objects.order_by("id").values_list("id", flat=True)[: n // 100])
    Node.objects.filter(id__in=drifting).update(
        drift=True, drift_details=[{"field": "kubelet_version", "expected": "v1.6.4", "observed": "v1.7.0"}]
    )
    for cluster in clusters[:2]:
        names = list(Node.objects.filter(cluster=cluster).order_by("name").values_list("name", flat=True)[:500])
        rollout = services.rollout_create(
            actor="bench",
            name=f"{cluster.name} to shared",
            cluster=cluster,
            intent="shared",
            selector={"nodes": names},
            strategy=Strategy(),
        )
        services.rollout_start(actor="bench", rollout=rollout)
    for _ in range(5):
        Audit.objects.create(requested_by="bench", status="succeeded", total=n, done=n, finished_at=timezone.now())
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")  # as autovacuum does after a bulk load; the plans depend on it


def main(n: int) -> None:
    from bench._fleet import ensure_postgres_database

    ensure_postgres_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection, reset_queries
    from django.db.models import Count
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from core.roles import role_set
    from nodes import selectors
    from nodes.models import COUNTED_COLUMNS, Node, NodeCount

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    populate(n)
    print(f"database: {connection.vendor}; {Node.objects.count()} nodes set up in {time.perf_counter() - started:.1f}s")

    user = get_user_model().objects.create_user(username="bench-viewer")
    role_set(user=user, role="viewer")
    client = Client()
    client.force_login(user)

    def render():
        response = client.get("/")
        assert response.status_code == 200, response.status_code
        return response

    body = render().content.decode()
    assert f"{n} nodes by decided PID namespace" in body, "the overview does not count every node"
    with CaptureQueriesContext(connection) as captured:
        render()
    statements = [q["sql"] for q in captured.captured_queries]

    def sql_alone():
        with connection.cursor() as cursor:
            for sql in statements:
                cursor.execute(sql)
                if cursor.description is not None:
                    cursor.fetchall()

    t_page = median_seconds(render)
    t_sql = median_seconds(sql_alone)
    settings.PIDNS_OVERVIEW_CACHE_SECONDS = 60
    t_cached = median_seconds(render)
    settings.PIDNS_OVERVIEW_CACHE_SECONDS = 0
    t_aggregation = median_seconds(lambda: selectors.fleet_overview())
    t_group_by = median_seconds(lambda: list(Node.objects.order_by().values(*COUNTED_COLUMNS).annotate(n=Count("id"))))
    reset_queries()
    print(
        f"aggregation from the kept counts ({NodeCount.objects.count()} rows): {t_aggregation * 1000:.1f} ms; "
        f"the same counts by GROUP BY over the {n} nodes: {t_group_by * 1000:.1f} ms"
    )
    from nodes.models import Cluster
    from nodes.whatif import Change, whatif

    biggest = max(Cluster.objects.all(), key=lambda c: c.nodes.count())
    t_whatif = median_seconds(lambda: whatif(biggest, Change(kubelet_version="v1.8.0", plan="upstream")))
    print(f"what-if over cluster {biggest.name} ({biggest.nodes.count()} nodes): {t_whatif * 1000:.1f} ms")
    print(f"overview: {len(statements)} queries; median of {RUNS} runs each")
    print(f"SQL alone:        {t_sql * 1000:8.1f} ms")
    print(f"whole page:       {t_page * 1000:8.1f} ms  ratio {t_page / t_sql:.2f}x")
    print(f"page, aggregation shared from the cache: {t_cached * 1000:8.1f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
