"""Rollouts survive what production does to them: a worker killed with SIGKILL, a Redis
restart, two workers at once. Real Celery worker processes, a private Redis, PostgreSQL."""

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connection

from config.celery import app, worker_argv
from core.models import AuditEvent
from drivers.docker_engine import DockerEngineDriver
from nodes.access import endpoint_for
from nodes.management.commands.simfleet import register
from nodes.models import Cluster, Node
from rollout import transitions as services
from rollout.models import NodeOperation
from rollout.strategy import Strategy
from rollout.tasks import rollout_kick, rollouts_reconcile
from tests.conftest import fleet_spec, node_group, subprocess_database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
ISOLATED_16 = {"enable-cri": "false"}
NODES = 50


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def postgres_only():
    if connection.vendor != "postgresql":
        if os.environ.get("CI"):
            pytest.fail("CI runs the reliability tests on PostgreSQL")
        pytest.skip("worker processes writing at once need PostgreSQL (set DATABASE_URL)")


class PrivateRedis:
    """A redis-server of the test's own, so that it can be restarted without touching others."""

    def __init__(self, directory):
        self.port = _free_port()
        self.directory = directory
        self.process = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.process = subprocess.Popen(  # noqa: S603
            [
                shutil.which("redis-server"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def _use_broker(url, monkeypatch=None):
    """Point this process's Celery app at ``url``; pools made for the previous broker are dropped.
    (Celery reads CELERY_BROKER_URL from the environment before its own configuration.)"""
    if monkeypatch is not None:
        monkeypatch.setenv("CELERY_BROKER_URL", url)
    app.conf.broker_url = url
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def redis(tmp_path, postgres_only, monkeypatch):
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(tmp_path)
    server.start()
    previous = app.conf.broker_url
    _use_broker(server.url, monkeypatch)
    yield server
    monkeypatch.undo()
    _use_broker(previous)
    server.stop()


class Worker:
    """A Celery worker process; ``supervised`` restarts it when it exits, as systemd's
    Restart=always or a Kubernetes Deployment would."""

    def __init__(self, name, env, log_dir, supervised=False):
        self.name, self.env, self.log_dir, self.supervised = name, env, log_dir, supervised
        self.restarts = -1
        self.stopping = threading.Event()
        self.process = self._spawn()
        if supervised:
            threading.Thread(target=self._supervise, daemon=True).start()

    def _spawn(self):
        self.restarts += 1
        log = open(self.log_dir / f"{self.name}.{self.restarts}.log", "w")  # noqa: SIM115 (closed with the process)
        return subprocess.Popen(  # noqa: S603
            [sys.executable, *worker_argv(hostname=f"{self.name}@%h", concurrency=12, quiet=True)],
            cwd=django_settings.BASE_DIR,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def _supervise(self):
        while not self.stopping.wait(0.2):
            if self.process.poll() is not None:
                self.process = self._spawn()

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self):
        self.stopping.set()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture
def workers(redis, tmp_path, settings):
    # The reconciler runs here (as beat would): it must use the workers' short timings.
    settings.PIDNS_DISPATCH_STALE_SECONDS = 3
    settings.PIDNS_OPERATION_LEASE_SECONDS = 3
    started = []
    env = {
        **os.environ,
        "CELERY_BROKER_URL": redis.url,
        "PIDNS_VERIFY_POLL": "0.05",
        "PIDNS_VERIFY_TIMEOUT": "2",
        "PIDNS_OPERATION_LEASE_SECONDS": "3",
        "PIDNS_DISPATCH_STALE_SECONDS": "3",
        "PIDNS_VAR_DIR": str(tmp_path),
    }

    def spawn(name, supervised=False):
        worker = Worker(name, {**env, "DATABASE_URL": subprocess_database_url()}, tmp_path, supervised)
        started.append(worker)
        return worker

    yield spawn
    for worker in started:
        worker.stop()


@pytest.fixture
def lab(run_fleet):
    fleet = run_fleet(
        fleet_spec(node_group("n-{i}", count=NODES, kubelet_flags=ISOLATED_16, faults={"latency_ms": 15})),
        sync_interval=0.05,
    )
    register(fleet)
    call_command("audit", quiet=True, stdout=io.StringIO())
    return fleet


def start_rollout(max_unavailable=10):
    cluster = Cluster.objects.get(name="sim")
    rollout = services.rollout_create(
        actor="user:test",
        name="reliability",
        cluster=cluster,
        intent="shared",
        strategy=Strategy(canary_count=0, batch_size=NODES, max_unavailable=max_unavailable),
    )
    rollout = services.rollout_start(actor="user:test", rollout=rollout)
    rollout_kick(rollout.pk)
    return rollout


def succeeded(rollout):
    return rollout.operations.filter(state="succeeded").count()


def describe(rollout):
    """The rollout's status, reason and operations per state, for failure messages."""
    rollout.refresh_from_db()
    states = {}
    for state, code in rollout.operations.values_list("state", "error_code"):
        key = f"{state}:{code}" if code else state
        states[key] = states.get(key, 0) + 1
    return f"{rollout.status} ({rollout.reason}); operations {states}"


def wait_until(predicate, timeout, reconcile=False):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if reconcile:
            rollouts_reconcile.apply()  # what beat does every few seconds
        time.sleep(0.5)
    return predicate()


def assert_all_shared(fleet, rollout):
    rollout.refresh_from_db()
    assert rollout.status == "succeeded", rollout.reason
    assert not NodeOperation.objects.filter(state="running").exists()
    assert rollout.operations.filter(state="succeeded").count() == NODES
    driver = DockerEngineDriver()
    for node in Node.objects.filter(cluster__name="sim"):
        assert driver.facts(endpoint_for(node)).observed_pid_namespace == "shared", node.name
        # The inventory is right the moment the rollout ends: what the service wants and what it saw.
        assert (node.observed_pid_namespace, node.observed_via) == ("shared", "verify"), node.name
        assert node.kubelet_flags == node.desired_flags == {"enable-cri": "true"}, node.name
    # Each node's drop-in changed once: a repeated apply found it already written.
    assert max(n.restarts for n in fleet.nodes) == 1
    # And the next audit confirms it: nothing the service did reads as drift.
    out = io.StringIO()
    call_command("audit", quiet=True, stdout=out)
    assert f"{NODES} nodes read, 0 failed, 0 drifted" in out.getvalue()


def test_worker_killed_mid_rollout(lab, workers):
    first = workers("first")
    rollout = start_rollout()
    assert wait_until(lambda: succeeded(rollout) >= 10, 60), describe(rollout)
    first.kill()
    rollout.refresh_from_db()
    assert rollout.status == "running" and succeeded(rollout) < NODES  # killed mid-rollout
    workers("second")
    assert wait_until(lambda: succeeded(rollout) == NODES, 120, reconcile=True), describe(rollout)
    assert wait_until(lambda: rollout.__class__.objects.get(pk=rollout.pk).status == "succeeded", 30, reconcile=True), (
        describe(rollout)
    )
    assert_all_shared(lab, rollout)


def test_redis_restart_mid_rollout(lab, workers, redis):
    # kombu's Redis transport can exit the worker when the broker goes away with acks-late
    # tasks in flight (restore_unacked on a dead connection), so the worker runs supervised.
    workers("only", supervised=True)
    rollout = start_rollout()
    assert wait_until(lambda: succeeded(rollout) >= 10, 60), describe(rollout)
    redis.stop()
    rollout.refresh_from_db()
    assert rollout.status == "running" and succeeded(rollout) < NODES  # Redis went away mid-rollout
    time.sleep(1)
    redis.start()
    assert wait_until(
        lambda: rollout.__class__.objects.get(pk=rollout.pk).status == "succeeded", 120, reconcile=True
    ), describe(rollout)
    assert_all_shared(lab, rollout)


def test_two_workers_never_claim_the_same_operation(lab, workers):
    workers("one")
    workers("two")
    rollout = start_rollout(max_unavailable=20)
    assert wait_until(
        lambda: rollout.__class__.objects.get(pk=rollout.pk).status == "succeeded", 120, reconcile=True
    ), describe(rollout)
    assert_all_shared(lab, rollout)
    assert set(rollout.operations.values_list("attempts", flat=True)) == {1}
    actors = set(AuditEvent.objects.filter(verb="operation-succeeded").values_list("actor", flat=True))
    assert len(actors) == 2, actors  # both workers ran operations, never the same one twice


def test_worker_killed_mid_drain_leaves_no_node_cordoned(run_fleet, workers):
    """SIGKILL while nodes are cordoned and draining: the next worker takes their steps over a
    lease later, the drains finish, and every node ends uncordoned with its pods in the new mode."""
    from simfleet.spec import parse_spec

    spec = {
        "clusters": [
            {
                "name": "sim",
                "kubernetes": True,
                "workloads": [{"kind": "Deployment", "name": "web", "replicas": 4, "max_unavailable": 1}],
                "nodes": [node_group("k-{i}", count=4, kubelet_flags=ISOLATED_16)],
            }
        ]
    }
    fleet = run_fleet(parse_spec(spec), sync_interval=0.05)
    sim_cluster = fleet.clusters["sim"]
    sim_cluster.recreate_delay = 2.0  # a budget that holds each drain for a while
    register(fleet)
    call_command("audit", quiet=True, stdout=io.StringIO())
    first = workers("first")
    rollout = services.rollout_create(
        actor="user:test",
        name="drain",
        cluster=Cluster.objects.get(name="sim"),
        intent="shared",
        strategy=Strategy(canary_count=0, batch_size=4, max_unavailable=4),
        drain=True,
        drain_timeout=120,
    )
    rollout = services.rollout_start(actor="user:test", rollout=rollout)
    rollout_kick(rollout.pk)
    draining = rollout.operations.filter(step="drain", cordoned=True, drain_state__has_key="waiting")
    assert wait_until(draining.exists, 60), describe(rollout)
    first.kill()
    cordoned_at_kill = list(rollout.operations.filter(cordoned=True, state="running").values_list("id", flat=True))
    assert cordoned_at_kill and any(sim_cluster.unschedulable.values())  # killed with nodes cordoned mid-drain
    from django.utils import timezone

    killed_at = timezone.now()
    workers("second")
    assert wait_until(
        lambda: rollout.__class__.objects.get(pk=rollout.pk).status == "succeeded", 120, reconcile=True
    ), describe(rollout)
    assert not any(sim_cluster.unschedulable.values())
    assert not Node.objects.filter(cluster__name="sim", cordoned_by_service=True).exists()
    assert sim_cluster.unavailable_peak["web"] <= 1
    assert rollout.operations.filter(state="succeeded").count() == 4
    taken_over = rollout.operations.filter(pk__in=cordoned_at_kill, state="succeeded", finished_at__gt=killed_at)
    assert taken_over.count() == len(cordoned_at_kill)  # the second worker finished what the first left
    driver = DockerEngineDriver()
    time.sleep(0.5)
    for node in Node.objects.filter(cluster__name="sim"):
        assert driver.poll(endpoint_for(node)).mode in ("shared", "unknown"), node.name
