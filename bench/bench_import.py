"""Import 100,000 nodes through `import_nodes` and compare with a bare bulk_create of the same rows.

Uses a scratch database: BENCH_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/pidns_bench,
created if missing), else a temporary SQLite file. Prints the times and their ratio.
Run: python bench/bench_import.py [N]
"""

import io
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench._fleet import scratch_environment  # noqa: E402

scratch = scratch_environment()


def main(n: int) -> None:
    from bench._fleet import ensure_postgres_database

    ensure_postgres_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction

    from bench._fleet import fleet_rows
    from nodes.models import Cluster, Node

    call_command("migrate", verbosity=0)
    clusters = [Cluster.objects.get_or_create(name=f"c{i}")[0] for i in range(4)]
    rows = fleet_rows(n, [c.name for c in clusters])
    path = Path(scratch) / "fleet.json"
    path.write_text(json.dumps({"nodes": rows}))
    by_name = {c.name: c.pk for c in clusters}

    def bare_rows():
        for row in rows:
            row = dict(row)
            yield Node(cluster_id=by_name[row.pop("cluster")], **row)

    def bare_clean() -> float:
        started = time.perf_counter()
        with transaction.atomic():
            Node.objects.bulk_create(list(bare_rows()), batch_size=2000)
        return time.perf_counter() - started

    t_bare = bare_clean()
    Node.objects.all().delete()
    started = time.perf_counter()
    call_command("import_nodes", str(path), "--quiet", stdout=io.StringIO())
    t_import = time.perf_counter() - started
    assert Node.objects.count() == n
    started = time.perf_counter()
    call_command("import_nodes", str(path), "--quiet", stdout=io.StringIO())
    t_reimport = time.perf_counter() - started
    print(f"database: {connection.vendor}; {n} nodes")
    print(f"bare bulk_create:           {t_bare:7.2f}s")
    print(f"import_nodes (create):      {t_import:7.2f}s  ratio {t_import / t_bare:.2f}x")
    print(f"import_nodes (all updates): {t_reimport:7.2f}s  ratio {t_reimport / t_bare:.2f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
