"""Sync a cluster of 10,000 nodes from its (simulated) Kubernetes API, and what it costs.

Three syncs in one run: the first creates every node, the second finds nothing changed, the third
follows a change on every node (each cordoned). Each reports its wall
time, the LIST pages it read, and its SQL statements; and, as a ratio, the time against reading the
same pages alone through the client (the API's own cost).

Uses a scratch database: BENCH_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/pidns_bench,
dropped and created), else a temporary SQLite file. Run: python bench/bench_sync.py [N]
"""

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench._fleet import scratch_environment  # noqa: E402

scratch = scratch_environment()
PAGE = 500


def main(n: int) -> None:
    from bench._fleet import ensure_postgres_database

    ensure_postgres_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from nodes.access import kube_client
    from nodes.kubesync import cluster_sync
    from nodes.models import Cluster, Node
    from simfleet.fleet import FleetThread
    from simfleet.spec import parse_spec

    call_command("migrate", verbosity=0)
    spec = parse_spec(
        {
            "clusters": [
                {
                    "name": "big",
                    "kubernetes": True,
                    "nodes": [
                        {
                            "name": "big-{i}",
                            "count": n,
                            "kubelet_version": "v1.6.4",
                            "docker_version": "1.12.6",
                            "pods": 0,
                            "faults": {"unreachable": True},  # no engine endpoints: the API alone
                        }
                    ],
                }
            ]
        }
    )
    started = time.perf_counter()
    thread = FleetThread(spec, engine="fake").start(timeout=600)
    fleet = thread.fleet
    sim = fleet.clusters["big"]
    print(f"simulated cluster of {n} nodes served in {time.perf_counter() - started:.1f}s")
    cluster = Cluster.objects.create(
        name="big", kube_api_server=fleet.api_url(sim), kube_ca_cert=fleet.kube_ca, kube_token=sim.token
    )

    def list_alone() -> float:
        began = time.perf_counter()
        assert sum(1 for _ in kube_client(cluster).list_nodes(page_size=PAGE)) == n
        return time.perf_counter() - began

    try:
        for label, before in (
            ("first sync (creates every node)", None),
            ("second sync (nothing changed)", None),
            ("third sync (every node cordoned)", "cordon"),
        ):
            if before == "cordon":
                for name in sim.nodes:
                    sim.set_unschedulable(name, True)
            began = time.perf_counter()
            with CaptureQueriesContext(connection) as queries:
                result = cluster_sync(actor="bench", cluster=cluster, page_size=PAGE)
            wall = time.perf_counter() - began
            t_list = list_alone()
            print(
                f"{label}: {result}; {wall:.2f}s, {len(queries.captured_queries)} SQL statements, "
                f"{-(-n // PAGE)} LIST pages; listing alone {t_list:.2f}s: ratio {wall / t_list:.2f}"
            )
        assert Node.objects.filter(cluster=cluster).count() == n
        assert Node.objects.filter(cluster=cluster, cordoned=True).count() == n
    finally:
        thread.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
