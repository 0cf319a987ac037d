"""Shared by the benchmarks: a synthetic fleet (realistic version mixes, deterministic) and a
scratch PostgreSQL database. Importing this module changes nothing."""

import os
import queue
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

KUBELETS = [
    "v1.5.7",
    "v1.6.4",
    "v1.6.9+coreos.0",
    "v1.6.2-gke.0",
    "v1.7.3",
    "v1.7.0-beta.2",
    "v1.8.4",
    "v1.9.3",
    "v1.10.5",
    "v1.11.3",
    "v1.12.2",
    "v1.17.0",
]
DOCKERS = ["1.11.2", "1.12.0-rc4", "1.12.6", "1.13.1", "1.13.1-cs9", "17.03.1-ce", "17.06.2-ce", "18.06.1-ce"]
FLAGS = [
    {},
    {"enable-cri": "false"},
    {"enable-cri": "true"},
    {"docker-disable-shared-pid": "false"},
    {"feature-gates": "PodShareProcessNamespace=true"},
]
PAUSES = ["gcr.io/google_containers/pause-amd64:3.0", "k8s.gcr.io/pause-amd64:3.1", ""]


def fleet_rows(n: int, clusters: list[str], seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        rows.append(
            {
                "cluster": clusters[i % len(clusters)],
                "name": f"node-{i:06d}",
                "kubelet_version": rng.choice(KUBELETS),
                "container_runtime": "docker" if rng.random() < 0.95 else "cri-o",
                "runtime_version": rng.choice(DOCKERS),
                "kubelet_flags": rng.choice(FLAGS),
                "pause_image": rng.choice(PAUSES),
                "labels": {"pool": rng.choice(["general", "gpu", "infra"]), "zone": rng.choice("abc")},
            }
        )
    return rows


def scratch_environment() -> str:
    """A scratch directory for one benchmark run, and its database: BENCH_DATABASE_URL, else a
    SQLite file in the directory. Sets the environment Django reads; call before django.setup()."""
    import tempfile

    scratch = tempfile.mkdtemp(prefix="pidns-bench-")
    os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{scratch}/bench.sqlite3"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("PIDNS_VAR_DIR", scratch)
    return scratch


def ensure_postgres_database(url: str) -> None:
    if not url.startswith("postgres"):
        return
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class FleetProcess:
    """The simulated fleet in its own process; counts the Engine API requests it served."""

    def __init__(self, spec_path: Path, env: dict):
        self.process = subprocess.Popen(  # noqa: S603
            [sys.executable, str(ROOT / "manage.py"), "simfleet", str(spec_path), "--register", "--sync-interval", "5"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.strip())

    def wait_ready(self) -> None:
        while not self.lines.get(timeout=600).startswith("simfleet ready"):
            pass

    def requests(self) -> int:
        self.process.send_signal(signal.SIGUSR1)
        while True:
            line = self.lines.get(timeout=30)
            if line.startswith("simfleet requests "):
                return int(line.rsplit(" ", 1)[1])
