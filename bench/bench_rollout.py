"""Rollout wall time against its floor ceil(N / max_unavailable) * t_node.

N fake nodes (default 1,000) whose kubelet takes ``--restart-ms`` (150) to restart; max_unavailable
50; ``--processes`` Celery worker processes (2) of ``--threads`` threads each (20), or a prefork
pool with ``--pool prefork``; the fleet in its own process. t_node is measured by rolling one node
alone. Prints wall, floor and ratio, operations per second, CPU per operation split by process,
and Engine API requests per operation. Needs PostgreSQL (BENCH_DATABASE_URL, default a scratch
database on the local server) and Redis (BENCH_BROKER_URL, default database 15 of the local server).

Run: python bench/bench_rollout.py [N] [--restart-ms 150] [--processes 2] [--threads 20] [--no-real]
"""

import argparse
import contextlib
import logging
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


from bench._fleet import FleetProcess  # noqa: E402
from bench._fleet import cpu_seconds as _cpu_seconds  # noqa: E402


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
    """CPU seconds of PostgreSQL: its live processes, plus what the postmaster has collected from
    the backends that exited (a connection closed during the run is counted too)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if not (entry / "comm").read_text().strip().startswith("postgres"):
                    continue
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
                parent = Path(f"/proc/{fields[1]}/comm")
                if not (parent.exists() and parent.read_text().strip().startswith("postgres")):
                    total += (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")  # reaped children
            except (OSError, ValueError, IndexError):
                continue
    return total


def _tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its live descendants (a prefork worker's children)."""
    total = 0.0
    try:
        total += _cpu_seconds(pid)
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += _tree_cpu(int(child))
    except (OSError, ValueError):
        pass
    return total


IDLE_SECONDS = 5.0
RECONCILE_EVERY = 3.0  # as beat runs rollouts_reconcile (PIDNS_ROLLOUT_RECONCILE_INTERVAL)


def _sample(rollout_id: int) -> tuple[str, int]:
    """The rollout's status and its operations running, in one query."""
    from django.db.models import Count, Q

    from rollout.models import Rollout

    row = (
        Rollout.objects.filter(pk=rollout_id)
        .annotate(running=Count("operations", filter=Q(operations__state="running")))
        .values("status", "running")
        .get()
    )
    return row["status"], row["running"]


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and its descendants, children first found, all at once."""
    pids = [pid]
    for index in range(len(pids) + 10_000):
        if index >= len(pids):
            break
        for task in Path(f"/proc/{pids[index]}/task").glob("*"):
            try:
                pids += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
    for target in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGKILL)


def main(n: int, restart_ms: int, processes: int, threads: int, pool: str, real: bool, kill_at: float = 0.0) -> None:
    from bench._fleet import ensure_postgres_database

    ensure_postgres_database(DB)
    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.core.management import call_command
    from django.utils import timezone

    from config.celery import worker_argv
    from nodes.models import Cluster
    from rollout import transitions as services
    from rollout.models import NodeOperation, Rollout
    from rollout.strategy import Strategy
    from rollout.tasks import rollout_kick, rollouts_reconcile

    logging.getLogger("celery").setLevel(logging.WARNING)  # the reconciler's runs, below
    redis.Redis.from_url(BROKER).flushdb()
    call_command("migrate", verbosity=0)
    node = {
        "kubelet_version": "v1.6.4",
        "docker_version": "1.12.6",
        "pods": 1,
        "kubelet_flags": {"enable-cri": "false"},
        "faults": {"restart_ms": restart_ms},
    }
    spec = {"clusters": [{"name": "bench", "nodes": [{"name": "one", **node}, {"name": "n-{i}", "count": n, **node}]}]}
    spec_path = Path(scratch) / "fleet.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    env = {**os.environ, **ENV}
    fleet = FleetProcess(spec_path, env)
    children = [fleet.process]
    try:
        fleet.wait_ready()
        call_command("audit", quiet=True, concurrency=50)

        def start_worker(index: int) -> subprocess.Popen:
            argv = worker_argv(
                hostname=f"bench{index}@%h", concurrency=threads, loglevel="ERROR", quiet=True, pool=pool
            )
            return subprocess.Popen(  # noqa: S603
                [sys.executable, *argv], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )

        children.extend(start_worker(index) for index in range(processes))
        cluster = Cluster.objects.get(name="bench")
        in_flight: list[int] = []

        def run(selector, strategy, cluster_name="bench"):
            target = cluster if cluster_name == "bench" else Cluster.objects.get(name=cluster_name)
            rollout = services.rollout_create(
                actor="bench", name="bench", cluster=target, intent="shared", strategy=strategy, selector=selector
            )
            started = time.perf_counter()
            services.rollout_start(actor="bench", rollout=rollout)
            rollout_kick(rollout.pk)
            in_flight.clear()
            reconciled = time.monotonic()
            while True:
                status, running = _sample(rollout.pk)
                if status in ("succeeded", "failed", "rolled-back"):
                    break
                in_flight.append(running)
                if on_sample is not None:
                    on_sample(rollout)
                if time.monotonic() - reconciled >= RECONCILE_EVERY:
                    rollouts_reconcile.apply()  # what beat does
                    reconciled = time.monotonic()
                time.sleep(sample_every)
            return Rollout.objects.get(pk=rollout.pk), time.perf_counter() - started

        sample_every = 0.05
        on_sample = None
        killed: dict = {}

        def kill_the_first_worker(rollout) -> None:
            """SIGKILL worker-1 (with its pool's processes) once ``kill_at`` of the operations
            succeeded, and start another in its place; note which operations were in flight."""
            if killed or NodeOperation.objects.filter(rollout=rollout, state="succeeded").count() < kill_at * n:
                return
            running = NodeOperation.objects.filter(rollout=rollout, state="running")
            killed["ids"] = list(running.values_list("id", flat=True))
            killed["at"] = timezone.now()
            _kill_tree(children[1].pid)
            children[1].wait()
            children[1] = start_worker(0)

        single, _ = run({"nodes": ["one"]}, Strategy(canary_count=0))
        t_node = NodeOperation.objects.get(rollout=single, node__name="one").duration_seconds
        # The bench's own sampling is a load on PostgreSQL too: about 50 samples per operation's time.
        sample_every = max(0.05, t_node / 50)
        names = ["fleet", *(f"worker-{i + 1}" for i in range(processes))]

        def system_cpu() -> float:
            return sum(_tree_cpu(child.pid) for child in children[1:]) + _postgres_cpu()

        idle_started, idle_cpu = time.perf_counter(), system_cpu()
        time.sleep(IDLE_SECONDS)
        idle_rate = (system_cpu() - idle_cpu) / (time.perf_counter() - idle_started)
        cpu_before = {name: _tree_cpu(child.pid) for name, child in zip(names, children, strict=True)}
        pg_before = _postgres_cpu()
        requests_before = fleet.requests()
        on_sample = kill_the_first_worker if kill_at else None
        rollout, wall = run(
            {"labels": {}, "nodes": [f"n-{i:04d}" if n >= 100 else f"n-{i:02d}" for i in range(1, n + 1)]},
            Strategy(canary_count=0, batch_size=n, max_unavailable=MAX_UNAVAILABLE),
        )
        requests = fleet.requests() - requests_before
        cpu = {name: _tree_cpu(child.pid) - cpu_before[name] for name, child in zip(names, children, strict=True)}
        postgres = _postgres_cpu() - pg_before
        ops = NodeOperation.objects.filter(rollout=rollout)
        done = ops.filter(state="succeeded").count()
        mean_op = sum(ops.values_list("duration_seconds", flat=True)) / max(1, ops.count())
        waves = math.ceil(n / MAX_UNAVAILABLE)
        shape = f"{processes} {pool} worker processes" + (f" x {threads} threads" if pool == "threads" else "")
        if pool != "threads":
            shape = f"{processes} {pool} workers of {threads} processes"
        print(
            f"rollout of {n} fake nodes, kubelet restart {restart_ms} ms, max_unavailable {MAX_UNAVAILABLE}, "
            f"{shape}: {rollout.status}, {done} succeeded"
        )
        print(f"  one node alone (apply + verify): t_node {t_node * 1000:.0f} ms")
        print(
            f"  wall {wall:.2f}s; floor {waves} waves x t_node = {waves * t_node:.2f}s; "
            f"ratio {wall / (waves * t_node):.2f}; {n / wall:.1f} operations/s; mean operation "
            f"{mean_op * 1000:.0f} ms in the rollout"
        )
        if killed:
            print("  CPU not measured: a worker was killed during the run")
        else:
            workers = sum(v for k, v in cpu.items() if k != "fleet")
            print(
                "  CPU seconds during the rollout: "
                + ", ".join(f"{name} {seconds:.1f}" for name, seconds in cpu.items())
                + f", postgres {postgres:.1f}; {(workers + postgres) / wall:.2f} of {os.cpu_count()} cores busy "
                f"(simulator apart); {(workers + postgres) / n * 1000:.1f} ms of CPU per operation "
                f"(workers {workers / n * 1000:.1f} + postgres {postgres / n * 1000:.1f}); "
                f"simulator {cpu['fleet'] / n * 1000:.1f} ms"
            )
            busy_cpu = workers + postgres - idle_rate * wall
            print(
                f"  idle system (workers and PostgreSQL, no rollout): {idle_rate * 1000:.1f} ms of CPU per second; "
                f"without it, {busy_cpu / n * 1000:.1f} ms of CPU per operation"
            )
        print(f"  Engine API requests per operation: {requests / n:.1f}")
        busy = sorted(in_flight)
        print(
            f"  operations in flight (sampled every 50 ms): median {busy[len(busy) // 2]}, "
            f"max {busy[-1]} (max_unavailable {MAX_UNAVAILABLE})"
        )
        if killed:
            lease = settings.PIDNS_OPERATION_LEASE_SECONDS
            took = sorted(
                (finished - killed["at"]).total_seconds()
                for finished in NodeOperation.objects.filter(id__in=killed["ids"]).values_list("finished_at", flat=True)
            )
            print(
                f"  worker-1 SIGKILLed at {kill_at:.0%} with {len(took)} operations in flight (lease {lease}s, "
                f"reconciler every {RECONCILE_EVERY:.0f}s): they ended {took[len(took) // 2]:.1f}s (median) and "
                f"{took[-1]:.1f}s (last) after the kill"
            )
        if real:
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=1000)
    parser.add_argument("--restart-ms", type=int, default=150, help="how long a kubelet takes to restart")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (Celery workers)")
    parser.add_argument("--threads", type=int, default=20, help="threads per worker (processes with prefork)")
    parser.add_argument("--pool", choices=["threads", "prefork"], default="threads")
    parser.add_argument("--no-real", action="store_true", help="skip the 20 real-engine nodes")
    parser.add_argument(
        "--kill-at", type=float, default=0.0, help="SIGKILL worker-1 when this fraction of the nodes succeeded"
    )
    args = parser.parse_args()
    main(args.n, args.restart_ms, args.processes, args.threads, args.pool, not args.no_real, args.kill_at)
