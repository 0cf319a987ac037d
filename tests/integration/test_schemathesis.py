"""Schemathesis over every operation of the API, through gunicorn, on PostgreSQL and on SQLite:
no server error, and every answer as the schema describes it (status, content type, body, headers).
A fixed seed and a bounded number of examples keep the run the same every time and within CI's
budget; the demo inventory gives it objects to find."""

import os
import re
import subprocess
import sys

import pytest
from django.conf import settings

from tests.conftest import _free_port, wait_for_http

pytestmark = pytest.mark.slow

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    ]
)
EXAMPLES = int(os.environ.get("PIDNS_SCHEMATHESIS_EXAMPLES", "30"))


def _postgres_url() -> str | None:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        return None
    return url.rsplit("/", 1)[0] + "/pidns_schemathesis"


def _fresh_postgres(url: str) -> None:
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def _manage(env, *args) -> str:
    result = subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_no_server_error_and_every_answer_as_the_schema_says(database, tmp_path):
    if database == "postgresql":
        url = _postgres_url()
        if url is None:
            if os.environ.get("CI"):
                pytest.fail("CI runs schemathesis on PostgreSQL too (set DATABASE_URL)")
            pytest.skip("no PostgreSQL configured (DATABASE_URL)")
        _fresh_postgres(url)
    else:
        url = f"sqlite:///{tmp_path}/schemathesis.sqlite3"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "PIDNS_VAR_DIR": str(tmp_path / "var"),
        "PIDNS_API_RATE_TOKEN": "1000000/minute",
        "PIDNS_API_RATE_ADDRESS": "1000000/minute",
        "PIDNS_API_BAD_TOKENS": "0",
    }
    _manage(env, "migrate", "--verbosity", "0")
    _manage(env, "load_demo")
    token = _manage(env, "create_api_token", "fuzzer", "--role", "admin").strip()
    port = _free_port()
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"],
        cwd=settings.BASE_DIR,
        env={**env, "WEB_ACCESS_LOG": "/dev/null"},
        stdout=open(tmp_path / "gunicorn.log", "w"),  # noqa: SIM115 (the server owns it)
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", process=server)
        run = subprocess.run(  # noqa: S603
            [
                os.path.join(os.path.dirname(sys.executable), "schemathesis"),
                "run",
                f"http://127.0.0.1:{port}/api/schema/",
                "--header",
                f"Authorization: Token {token}",
                "--checks",
                CHECKS,
                "--max-examples",
                str(EXAMPLES),
                "--seed",
                "1",
                "--phases",
                "examples,fuzzing,stateful",
                "--workers",
                "2",
                "--no-shrink",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    output = run.stdout + run.stderr
    summary = re.search(r"(\d+) generated, (\d+) passed", output)
    print(f"schemathesis on {database}: {summary.group(0) if summary else 'no summary'}")
    assert run.returncode == 0, output[-6000:]
    assert summary and summary.group(1) == summary.group(2) and int(summary.group(1)) > 500, output[-3000:]
    assert "Traceback" not in (tmp_path / "gunicorn.log").read_text()


WRITER = """
import time
from django.utils import timezone
from nodes.models import Node
deadline = time.monotonic() + 8
while time.monotonic() < deadline:
    Node.objects.filter(cluster__name="staging").update(updated_at=timezone.now())
"""


SAVED = """
from rollout.models import Rollout
print(Rollout.objects.filter(name__startswith="busy ").count())
"""


def test_sqlite_under_concurrent_writes_answers_no_500(tmp_path):
    """The embedded default: web processes and a worker writing at once. Writers queue (WAL, immediate
    transactions, a busy timeout); one that cannot get the lock in time gets 503 with Retry-After."""
    import threading

    import requests

    url = f"sqlite:///{tmp_path}/busy.sqlite3"
    env = {**os.environ, "DATABASE_URL": url, "PIDNS_VAR_DIR": str(tmp_path / "var")}
    _manage(env, "migrate", "--verbosity", "0")
    _manage(env, "load_demo")
    token = _manage(env, "create_api_token", "busy", "--role", "admin").strip()
    port = _free_port()
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"],
        cwd=settings.BASE_DIR,
        env={**env, "WEB_ACCESS_LOG": "/dev/null"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    writer = None
    rollouts: list[int] = []
    audits: list[int] = []
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", process=server)
        writer = subprocess.Popen([sys.executable, "manage.py", "shell", "-c", WRITER], cwd=settings.BASE_DIR, env=env)  # noqa: S603
        base = f"http://127.0.0.1:{port}/api/v1"
        headers = {"Authorization": f"Token {token}"}

        def create(index):
            cluster = ("prod-east", "prod-west", "staging")[index % 3]
            body = {"cluster": cluster, "intent": "shared", "name": f"busy {index}"}
            rollouts.append(requests.post(f"{base}/rollouts/", json=body, headers=headers, timeout=60).status_code)
            audits.append(
                requests.post(f"{base}/audits/", json={"cluster": cluster}, headers=headers, timeout=60).status_code
            )

        threads = [threading.Thread(target=create, args=(i,)) for i in range(24)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        if writer is not None:
            writer.wait(timeout=30)
        server.terminate()
        server.wait(timeout=30)
    assert len(rollouts) == len(audits) == 24 and set(rollouts + audits) <= {202, 409, 503}, (rollouts, audits)
    # Writers queue behind the lock (30 s busy timeout, the same whether the file is the default or
    # named by DATABASE_URL): every answered rollout is stored, none half; one audit per cluster runs
    # at a time, the others conflict with it.
    stored = _manage(env, "shell", "-c", SAVED).split()[-1]
    assert int(stored) == rollouts.count(202) >= 20, (stored, rollouts)
    assert audits.count(202) >= 3 and audits.count(503) <= 3, audits
