"""Audit wall time against its floor.

1. Fake engine: N nodes (default 2,000), every request delayed by 50 ms, concurrency 50. The
   floor is N * t_node / concurrency, where t_node is the time to read one node alone (all its
   requests, each delayed). The fleet runs in its own process, as in production. The audit runs
   twice: read by threads of the audit's process, then by PIDNS_AUDIT_PROCESSES processes (at
   least 2); each prints its ratio, CPU per node (the audit process and its children) and Engine
   API requests per node.
2. Real engine (when a local dockerd answers): time to bring up 20 nodes with 2 pods each, and
   to audit them.

Uses a scratch database (BENCH_DATABASE_URL, else a temporary SQLite file).
Run: python bench/bench_audit.py [N]
"""

import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench._fleet import scratch_environment  # noqa: E402

scratch = scratch_environment()

LATENCY_MS = 50
CONCURRENCY = 50


def _own_cpu() -> float:
    """CPU seconds of this process and of its children that have exited (the reading processes)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(n: int) -> None:
    from bench._fleet import cpu_seconds, ensure_postgres_database

    ensure_postgres_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from bench._fleet import FleetProcess
    from drivers.docker_engine import DockerEngineDriver
    from nodes import audits
    from nodes.models import Node

    call_command("migrate", verbosity=0)
    spec_path = Path(scratch) / "fleet.yaml"
    group = {
        "name": "n-{i}",
        "count": n,
        "kubelet_version": "v1.6.4",
        "docker_version": "1.12.6",
        "pods": 1,
        "faults": {"latency_ms": LATENCY_MS},
    }
    spec_path.write_text(yaml.safe_dump({"clusters": [{"name": "bench", "nodes": [group]}]}))
    fleet = FleetProcess(spec_path, dict(os.environ))
    try:
        fleet.wait_ready()
        one = Node.objects.order_by("name").first()
        driver = DockerEngineDriver()
        started = time.perf_counter()
        samples = 5
        for _ in range(samples):
            driver.facts(audits.endpoint_for(one))
        t_node = (time.perf_counter() - started) / samples
        floor = n * t_node / CONCURRENCY
        print(f"fake engine: {n} nodes, {LATENCY_MS} ms per request, concurrency {CONCURRENCY}")
        print(f"  one node alone: {t_node * 1000:.0f} ms ({t_node * 1000 / LATENCY_MS:.1f} request latencies)")
        for processes in (1, max(2, settings.PIDNS_AUDIT_PROCESSES)):
            settings.PIDNS_AUDIT_PROCESSES = processes
            audit = audits.audit_create(actor="bench", concurrency=CONCURRENCY)
            requests_before = fleet.requests()
            started = time.perf_counter()
            cpu_started = _own_cpu()
            fleet_cpu_started = cpu_seconds(fleet.process.pid)
            result = audits.audit_execute(audit_id=audit.pk)
            wall = time.perf_counter() - started
            for child in multiprocessing.active_children():
                child.join(timeout=30)  # reaped children count in RUSAGE_CHILDREN
            audit_cpu = _own_cpu() - cpu_started
            fleet_cpu = cpu_seconds(fleet.process.pid) - fleet_cpu_started
            requests = fleet.requests() - requests_before
            how = "threads in the audit's process" if processes == 1 else f"{processes} processes"
            print(
                f"  audit read by {how}: {wall:.2f}s for {result.done} nodes ({result.failed} failed); "
                f"floor {floor:.2f}s; ratio {wall / floor:.2f}"
            )
            print(
                f"    CPU: audit {audit_cpu:.1f}s ({audit_cpu / n * 1000:.1f} ms per node), fleet "
                f"{fleet_cpu:.1f}s; {(audit_cpu + fleet_cpu) / wall:.2f} of {os.cpu_count()} cores busy; "
                f"{requests / n:.1f} Engine API requests per node"
            )
    finally:
        fleet.process.terminate()
        fleet.process.wait(timeout=30)
    real_engine()


def real_engine() -> None:
    from simfleet.fleet import dockerd_available

    if not dockerd_available():
        print("real engine: no dockerd at /run/pidns-docker.sock; skipped")
        return
    from nodes import audits
    from nodes.management.commands.simfleet import register
    from nodes.models import Cluster
    from simfleet.fleet import FleetThread
    from simfleet.spec import parse_spec

    spec = parse_spec(
        {
            "clusters": [
                {
                    "name": "real",
                    "nodes": [
                        {
                            "name": "r-{i}",
                            "count": 20,
                            "kubelet_version": "v1.6.4",
                            "docker_version": "1.12.6",
                            "pods": 2,
                        }
                    ],
                }
            ]
        }
    )
    started = time.perf_counter()
    with FleetThread(spec, engine="real") as fleet:
        up = time.perf_counter() - started
        register(fleet)
        audit = audits.audit_create(actor="bench", cluster=Cluster.objects.get(name="real"), concurrency=20)
        started = time.perf_counter()
        result = audits.audit_execute(audit_id=audit.pk)
        wall = time.perf_counter() - started
    print(
        f"real engine: 20 nodes x 2 pods up in {up:.1f}s; "
        f"audit {wall:.2f}s ({result.done} read, {result.failed} failed)"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
