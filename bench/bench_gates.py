"""Feature gates: catalog load time, validations per second on one core, and the upgrade check over
100,000 nodes with the number of queries it issues.

Run: python bench/bench_gates.py [N]   (BENCH_DATABASE_URL for PostgreSQL, else a scratch SQLite)
"""

import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def catalog_load_ms() -> float:
    """In a fresh interpreter, as a worker or web process starts: import and parse."""
    code = (
        "import time; t = time.perf_counter(); from gates.catalog import load_catalog; load_catalog(); "
        "print((time.perf_counter() - t) * 1000)"
    )
    runs = [
        float(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout)  # noqa: S603
        for _ in range(5)
    ]
    return sorted(runs)[len(runs) // 2]


def validations_per_second(catalog, seconds: float = 3.0) -> tuple[float, int]:
    from gates.gatecheck import validate

    rng = random.Random(3)
    names = sorted(catalog.gates)
    cases = [
        (f"v1.{rng.randint(10, 36)}.0", {rng.choice(names): rng.random() < 0.5 for _ in range(rng.randint(1, 6))})
        for _ in range(2000)
    ]
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for version, gates in cases:
            validate(version, gates, catalog)
        done += len(cases)
    return done / (time.perf_counter() - started), sum(len(g) for _, g in cases) // len(cases)


def upgrade_check_at_scale(n: int) -> None:
    from bench._fleet import ensure_postgres_database, scratch_environment

    scratch_environment()
    import os

    ensure_postgres_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from core.catalog import catalog
    from nodes import services
    from nodes.models import Node
    from nodes.upgrade import upgrade_check

    call_command("migrate", verbosity=0)
    cluster = services.cluster_create(
        actor="bench", name="big", plan="upstream", desired_gates={"PodShareProcessNamespace": True}
    )
    rng = random.Random(5)
    mixes = [
        {"PodShareProcessNamespace": True},
        {"PodShareProcessNamespace": True, "RotateKubeletServerCertificate": True},
        {"DynamicKubeletConfig": False},
        {},
    ]
    batch = []
    for i in range(n):
        batch.append(
            Node(
                cluster=cluster,
                name=f"n{i:06d}",
                kubelet_version="v1.18.20",
                runtime_version="19.03.15",
                observed_gates=rng.choice(mixes),
                desired_gates=None if rng.random() < 0.9 else {"DynamicKubeletConfig": False},
            )
        )
        if len(batch) == 5000:
            Node.objects.bulk_create(batch)
            batch = []
    Node.objects.bulk_create(batch)
    known = catalog()
    timings = []
    for _ in range(3):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            result = upgrade_check(cluster=cluster, kubelet_version="v1.19.0", catalog=known)
            timings.append(time.perf_counter() - started)
    print(
        f"upgrade check over {n:,} nodes ({connection.vendor}): {sorted(timings)[1]:.2f}s median of 3, "
        f"{len(queries.captured_queries)} queries; {result['current']['summary']}"
    )


def main(n: int) -> None:
    from gates.catalog import load_catalog

    print(f"catalog load (import + parse, fresh interpreter): {catalog_load_ms():.1f} ms median of 5")
    rate, gates = validations_per_second(load_catalog())
    print(f"validations on one core: {rate:,.0f}/s ({gates} gates each on average)")
    upgrade_check_at_scale(n)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
