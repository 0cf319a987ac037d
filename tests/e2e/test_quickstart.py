"""The quick start as a newcomer meets it: ``manage.py quickstart`` (what ``make run`` runs) on the
embedded default (SQLite, a broker that needs no server, a simulated fleet), driven over real HTTP
through its server. What a rollout writes, the next audit confirms: no drift the service caused."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import requests
from django.conf import settings

from tests.conftest import _free_port, wait_for_http

pytestmark = pytest.mark.slow


@pytest.fixture
def quickstart(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL")}
    env.update(
        PIDNS_VAR_DIR=str(tmp_path / "var"),
        PIDNS_ROLLOUT_RECONCILE_INTERVAL="1",
        PIDNS_VERIFY_POLL="0.1",
        PIDNS_DRAIN_RETRY_MAX="0.5",
    )
    log = open(tmp_path / "quickstart.log", "w+")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "manage.py", "quickstart", "--addr", f"127.0.0.1:{port}", "--engine", "fake"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/healthz", timeout=180, process=process)
        log.flush()
        token = re.search(r"admin token: (\w+)", (tmp_path / "quickstart.log").read_text()).group(1)
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token}"
        session.base = f"{base}/api/v1"
        session.log = tmp_path / "quickstart.log"
        yield session
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.seek(0)
        output = log.read()
        log.close()
        assert "Traceback" not in output, output[-4000:]
        assert (tmp_path / "var").stat().st_mode & 0o077 == 0  # var/ is the service's own


def wait_for(session, path, done, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = session.get(f"{session.base}{path}", timeout=30).json()
        if done(body):
            return body
        time.sleep(0.5)
    raise AssertionError(f"{path} did not finish: {body}")


def nodes(session, cluster):
    body = session.get(f"{session.base}/nodes/", params={"cluster": cluster, "page_size": 100}, timeout=30).json()
    return {n["name"]: n for n in body["results"]}


def audit(session, cluster):
    response = session.post(f"{session.base}/audits/", json={"cluster": cluster}, timeout=30)
    if response.status_code == 409:  # the scheduled one is still reading: follow it, then ours
        wait_for(session, response.json()["audit"].split("/api/v1")[1], lambda a: a["status"] != "running")
        response = session.post(f"{session.base}/audits/", json={"cluster": cluster}, timeout=30)
    assert response.status_code == 202, response.text
    return wait_for(session, f"/audits/{response.json()['id']}/", lambda a: a["status"] in ("succeeded", "failed"))


def test_rollout_then_audit_finds_no_drift_and_rollback_puts_the_nodes_back(quickstart):
    api = quickstart
    first = nodes(api, "lab-upstream")
    first_modes = {name: n["observed_pid_namespace"] for name, n in first.items()}
    assert first_modes["up-18-01"] == "isolated"  # 1.8 isolates by default

    created = api.post(
        f"{api.base}/rollouts/",
        json={"cluster": "lab-upstream", "intent": "shared", "batch_size": "50%", "start": True},
        timeout=30,
    )
    assert created.status_code == 202, created.text
    rollout = wait_for(api, f"/rollouts/{created.json()['id']}/", lambda r: r["status"] not in ("running", "draft"))
    assert rollout["status"] == "succeeded", rollout["reason"]
    changed = [op["node"] for op in rollout["operations"] if op["state"] == "succeeded"]
    assert changed, rollout["operations"]
    # The demo cluster has a Kubernetes API (discovered by the quick start's cluster sync): each
    # node was cordoned, drained and uncordoned around its change.
    log = api.log.read_text()
    assert "cluster sync lab-upstream: 3 nodes listed" in log and "kubectl --kubeconfig" in log
    assert rollout["drain"] is True
    for op in rollout["operations"]:
        if op["state"] == "succeeded":
            assert op["drain_state"]["drained_at"] and op["drain_state"]["uncordoned_at"], op

    # Right after the rollout, before any audit: the inventory reads what the rollout did.
    after = nodes(api, "lab-upstream")
    for name in changed:
        assert after[name]["cordoned"] is False and after[name]["in_cluster"] is True, after[name]
        assert after[name]["observed_pid_namespace"] == "shared", after[name]
        assert after[name]["kubelet_flags"] == after[name]["desired_flags"], after[name]
        assert not after[name]["drift"]

    result = audit(api, "lab-upstream")
    assert result["status"] == "succeeded" and result["drifted"] == 0, result
    audited = nodes(api, "lab-upstream")
    assert {n: audited[n]["observed_pid_namespace"] for n in changed} == dict.fromkeys(changed, "shared")
    assert not any(n["drift"] for n in audited.values())

    rolled = api.post(f"{api.base}/rollouts/{rollout['id']}/rollback/", timeout=30)
    assert rolled.status_code == 202, rolled.text
    rollout = wait_for(api, f"/rollouts/{rollout['id']}/", lambda r: r["status"] != "rolling-back")
    assert rollout["status"] == "rolled-back", rollout["reason"]
    result = audit(api, "lab-upstream")
    assert result["status"] == "succeeded" and result["drifted"] == 0, result
    back = nodes(api, "lab-upstream")
    assert {name: n["observed_pid_namespace"] for name, n in back.items()} == first_modes
    assert not any(n["drift"] for n in back.values())
