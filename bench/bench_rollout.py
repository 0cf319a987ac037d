"""Rollout wall time against its floor ceil(N / max_unavailable) * t_node.

N fake nodes (default 1,000) whose kubelet takes 150 ms to restart, so that apply + verify take
about 200 ms per node; max_unavailable 50; two Celery worker processes; the fleet in its own
process. t_node is measured by rolling one node alone. Also prints the orchestration overhead
per operation. Needs PostgreSQL (BENCH_DATABASE_URL, default a scratch database on the local
server) and Redis (BENCH_BROKER_URL, default database 15 of the local server).

Run: python bench/bench_rollout.py [N]
"""

import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
scratch = tempfile.mkdtemp(prefix="pidns-bench-")
DB = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/pidns_bench")
BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/15")
ENV = {
    "DATABASE_URL": DB,
    "CELERY_BROKER_URL": BROKER,
    "PIDNS_VAR_DIR": scratch,
    "DJANGO_SETTINGS_MODULE": "config.settings",
}
os.environ.update(ENV)
MAX_UNAVAILABLE = int(os.environ.get("BENCH_MAX_UNAVAILABLE", "50"))
RESTART_MS = 150


from bench._fleet import cpu_seconds as _cpu_seconds  # noqa: E402

NAMES = ("fleet", "worker-1", "worker-2")


def real_engine(run) -> None:
    """20 real-engine nodes (2 pods each) to shared and back, through the same workers."""
    from nodes.management.commands.simfleet import register
    from rollout import transitions as services
    from rollout.models import NodeOperation
    from rollout.strategy import Strategy
    from simfleet.fleet import FleetThread, dockerd_available
    from simfleet.spec import parse_spec

    if not dockerd_available():
        print("real engine: no dockerd at /run/pidns-docker.sock; skipped")
        return
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
                            "kubelet_flags": {"enable-cri": "false"},
                        }
                    ],
                }
            ]
        }
    )
    with FleetThread(spec, engine="real", sync_interval=0.2) as fleet:
        register(fleet)
        from django.core.management import call_command

        call_command("audit", cluster="real", quiet=True)
        forward, wall = run(
            {"labels": {}}, Strategy(canary_count=1, batch_size=19, max_unavailable=10), cluster_name="real"
        )
        ops = NodeOperation.objects.filter(rollout=forward, phase="forward")
        proof = ops.exclude(proof=[]).values_list("proof", flat=True).first() or ["none"]
        started = time.perf_counter()
        services.rollout_rollback(actor="bench", rollout=forward)
        from rollout.tasks import rollout_kick

        rollout_kick(forward.pk)
        while forward.__class__.objects.get(pk=forward.pk).status not in ("rolled-back", "failed"):
            time.sleep(0.1)
        back = time.perf_counter() - started
        forward.refresh_from_db()
        print(
            f"real engine: 20 nodes x 2 pods to shared in {wall:.1f}s ({ops.filter(state='succeeded').count()} "
            f"succeeded) and back in {back:.1f}s ({forward.status}); proof: {proof[0]}"
        )


def _postgres_cpu() -> float:
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip().startswith("postgres"):
                    total += _cpu_seconds(int(entry.name))
            except (OSError, ValueError):
                continue
    return total


def main(n: int) -> None:
    from bench._fleet import ensure_postgres_database

    ensure_postgres_database(DB)
    import django

    django.setup()
    import redis
    from django.core.management import call_command

    from config.celery import worker_argv
    from nodes.models import Cluster
    from rollout import transitions as services
    from rollout.models import NodeOperation, Rollout
    from rollout.strategy import Strategy
    from rollout.tasks import rollout_kick

    redis.Redis.from_url(BROKER).flushdb()
    call_command("migrate", verbosity=0)
    spec = {
        "clusters": [
            {
                "name": "bench",
                "nodes": [
                    {
                        "name": "one",
                        "kubelet_version": "v1.6.4",
                        "docker_version": "1.12.6",
                        "pods": 1,
                        "kubelet_flags": {"enable-cri": "false"},
                        "faults": {"restart_ms": RESTART_MS},
                    },
                    {
                        "name": "n-{i}",
                        "count": n,
                        "kubelet_version": "v1.6.4",
                        "docker_version": "1.12.6",
                        "pods": 1,
                        "kubelet_flags": {"enable-cri": "false"},
                        "faults": {"restart_ms": RESTART_MS},
                    },
                ],
            }
        ]
    }
    spec_path = Path(scratch) / "fleet.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    children = []
    env = {**os.environ, **ENV}
    fleet = subprocess.Popen(  # noqa: S603
        [sys.executable, str(ROOT / "manage.py"), "simfleet", str(spec_path), "--register", "--sync-interval", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env=env,
    )
    children.append(fleet)
    try:
        for line in fleet.stdout:
            if line.startswith("simfleet ready"):
                break
        call_command("audit", quiet=True, concurrency=50)
        for index in range(2):
            children.append(
                subprocess.Popen(  # noqa: S603
                    [
                        sys.executable,
                        *worker_argv(hostname=f"bench{index}@%h", concurrency=40, loglevel="ERROR", quiet=True),
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        cluster = Cluster.objects.get(name="bench")

        def run(selector, strategy, cluster_name="bench"):
            target = cluster if cluster_name == "bench" else Cluster.objects.get(name=cluster_name)
            rollout = services.rollout_create(
                actor="bench", name="bench", cluster=target, intent="shared", strategy=strategy, selector=selector
            )
            started = time.perf_counter()
            services.rollout_start(actor="bench", rollout=rollout)
            rollout_kick(rollout.pk)
            while Rollout.objects.get(pk=rollout.pk).status not in ("succeeded", "failed", "rolled-back"):
                time.sleep(0.05)
            return Rollout.objects.get(pk=rollout.pk), time.perf_counter() - started

        single, _ = run({"nodes": ["one"]}, Strategy(canary_count=0))
        cpu_before = {name: _cpu_seconds(child.pid) for name, child in zip(NAMES, children, strict=True)}
        pg_before = _postgres_cpu()
        t_node = NodeOperation.objects.get(rollout=single, node__name="one").duration_seconds
        rollout, wall = run(
            {"labels": {}, "nodes": [f"n-{i:04d}" if n >= 100 else f"n-{i:02d}" for i in range(1, n + 1)]},
            Strategy(canary_count=0, batch_size=n, max_unavailable=MAX_UNAVAILABLE),
        )
        ops = NodeOperation.objects.filter(rollout=rollout)
        done = ops.filter(state="succeeded").count()
        mean_op = sum(ops.values_list("duration_seconds", flat=True)) / max(1, ops.count())
        waves = math.ceil(n / MAX_UNAVAILABLE)
        print(
            f"rollout of {n} fake nodes, max_unavailable {MAX_UNAVAILABLE}, 2 worker processes: {rollout.status}, "
            f"{done} succeeded"
        )
        print(f"  one node alone (preflight + apply + verify): {t_node * 1000:.0f} ms")
        print(
            f"  wall {wall:.2f}s; floor with 200 ms: {waves * 0.2:.2f}s (ratio {wall / (waves * 0.2):.2f}); "
            f"floor with measured t_node: {waves * t_node:.2f}s (ratio {wall / (waves * t_node):.2f})"
        )
        print(
            f"  mean operation {mean_op * 1000:.0f} ms in the rollout; orchestration overhead per operation "
            f"{(wall - waves * t_node) / n * 1000:.1f} ms of wall time"
        )
        cpu = {name: _cpu_seconds(child.pid) - cpu_before[name] for name, child in zip(NAMES, children, strict=True)}
        postgres = _postgres_cpu() - pg_before
        busy = sum(cpu.values()) + postgres
        print(
            "  CPU seconds during the rollout: "
            + ", ".join(f"{name} {seconds:.1f}" for name, seconds in cpu.items())
            + f", postgres {postgres:.1f}; {busy / wall:.2f} of {os.cpu_count()} cores busy; "
            f"{busy / n * 1000:.0f} ms of CPU per operation"
        )
        real_engine(run)
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
