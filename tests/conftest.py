"""Shared fixtures: API clients for each role, and inventory builders that go through services."""

import os

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from core.roles import ROLES, role_set
from nodes import services
from nodes.access import default_driver
from simfleet.fleet import FleetThread, dockerd_available
from simfleet.spec import parse_spec


def make_client(username: str, role: str | None) -> APIClient:
    user = get_user_model().objects.create(username=username)
    if role:
        role_set(user=user, role=role)
    token = Token.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    client.user = user
    return client


@pytest.fixture
def clients(db):
    """One authenticated API client per role, plus ``none`` (a user without a role) and ``anon``."""
    result = {role: make_client(f"{role}-user", role) for role in ROLES}
    result["none"] = make_client("no-role-user", None)
    result["anon"] = APIClient()
    return result


@pytest.fixture
def viewer(clients):
    return clients["viewer"]


@pytest.fixture
def admin(clients):
    return clients["admin"]


@pytest.fixture
def make_cluster(db):
    def make(name="prod", plan="proposal", **kwargs):
        return services.cluster_create(actor="test", name=name, plan=plan, **kwargs)

    return make


@pytest.fixture
def make_node(db):
    def make(cluster, name, kubelet="v1.6.4", docker="1.12.6", flags=None, **kwargs):
        return services.node_create(
            actor="test",
            cluster=cluster,
            name=name,
            kubelet_version=kubelet,
            runtime_version=docker,
            kubelet_flags=flags or {},
            **kwargs,
        )

    return make


# --- simulated fleets ------------------------------------------------------------------------------


DOCKER_SOCK = os.environ.get("PIDNS_DOCKER_SOCK", "/run/pidns-docker.sock")
REAL_ENGINE_RESULTS = {"ran": 0, "skipped": 0}


def node_group(name="node-{i}", count=1, kubelet="v1.6.4", docker="1.12.6", **extra):
    return {"name": name, "count": count, "kubelet_version": kubelet, "docker_version": docker, **extra}


def fleet_spec(*groups, cluster="sim", plan="proposal"):
    return parse_spec({"clusters": [{"name": cluster, "plan": plan, "nodes": list(groups)}]})


@pytest.fixture
def run_fleet():
    """Start a simulated fleet in a background thread; stopped when the test ends."""
    started = []

    def run(spec, engine="fake", **options):
        options.setdefault("sync_interval", 0.2)
        fleet_thread = FleetThread(spec, engine=engine, **options).start()
        started.append(fleet_thread)
        fleet_thread.fleet.thread = fleet_thread
        return fleet_thread.fleet

    yield run
    for fleet_thread in started:
        fleet_thread.stop()
    default_driver().close()  # its kept clients point at ports the next fleet may reuse


@pytest.fixture
def real_engine():
    """A real local dockerd. In CI it must be there (the suite fails otherwise); elsewhere tests
    that need it are skipped with the reason."""
    if not dockerd_available(DOCKER_SOCK):
        REAL_ENGINE_RESULTS["skipped"] += 1
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the real Docker engine at {DOCKER_SOCK} (simfleet/dockerd.sh start)")
        pytest.skip(f"no Docker engine at {DOCKER_SOCK}; run simfleet/dockerd.sh start")
    REAL_ENGINE_RESULTS["ran"] += 1
    return f"unix://{DOCKER_SOCK}"


def pytest_configure(config):
    """Tests hash passwords fast (the production hasher is slow on purpose). Servers the tests start
    in other processes get the same through PIDNS_PASSWORD_HASHERS."""
    from django.conf import settings

    os.environ["PIDNS_PASSWORD_HASHERS"] = FAST_HASHER
    settings.PASSWORD_HASHERS = [FAST_HASHER]
    # Tests make many requests with one token; the throttling tests set their own rates.
    settings.PIDNS_API_RATES = {"user": "100000/minute", "anon": "100000/minute"}
    os.environ["PIDNS_API_RATE_TOKEN"] = os.environ["PIDNS_API_RATE_ADDRESS"] = "100000/minute"


FAST_HASHER = "django.contrib.auth.hashers.MD5PasswordHasher"


def pytest_terminal_summary(terminalreporter):
    ran, skipped = REAL_ENGINE_RESULTS["ran"], REAL_ENGINE_RESULTS["skipped"]
    if ran or skipped:
        state = "ran" if ran and not skipped else ("did not run" if not ran else "ran partly")
        terminalreporter.write_line(f"real engine: {state} ({ran} tests ran on dockerd, {skipped} skipped)")


@pytest.fixture
def celery_worker_thread(transactional_db):
    """A real Celery worker (solo pool, in a thread) on the configured broker: Redis when
    CELERY_BROKER_URL is set (CI), otherwise an in-memory broker."""
    from celery.contrib.testing.worker import start_worker

    from config.celery import app

    broker = os.environ.get("CELERY_BROKER_URL") or "memory://"
    app.conf.broker_url = broker
    app.conf.broker_transport_options = {"visibility_timeout": 3600} if broker.startswith("redis") else {}
    # Connections made for another broker by an earlier test (one that only published) are dropped,
    # or this test's tasks would go there and never reach the worker.
    app._pool = None
    app.amqp._producer_pool = None
    app.conf.task_always_eager = False
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(app.conf.task_default_queue)
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30, loglevel="WARNING") as worker:
        yield worker


def subprocess_database_url() -> str:
    """A URL for the test database, for processes the tests start (workers, simfleet)."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture(autouse=True)
def _overview_not_cached(settings):
    """Tests see the overview as of their own writes (the shared cache has its own test), and
    start with no sign-in failures counted."""
    from django.core.cache import cache

    settings.PIDNS_OVERVIEW_CACHE_SECONDS = 0
    cache.clear()


# --- the production server, over real HTTP ----------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float = 30, process=None) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (a local test server)
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


@pytest.fixture
def web_server(transactional_db, tmp_path):
    """gunicorn, as the quick start and production run it, on the test database. Yields its base URL."""
    import subprocess
    import sys

    from django.conf import settings

    port = _free_port()
    env = {**os.environ, "DATABASE_URL": subprocess_database_url(), "PIDNS_VAR_DIR": str(tmp_path / "var")}
    log = open(tmp_path / "gunicorn.log", "w")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/healthz", process=process)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
        errors = (tmp_path / "gunicorn.log").read_text()
        assert "Traceback" not in errors, errors[-3000:]
