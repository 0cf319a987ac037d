"""GET /metrics: Prometheus text read from the database at each scrape, scraped over real HTTP
through gunicorn with a bearer token and parsed with prometheus_client's own parser."""

import ipaddress

import pytest
import requests
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from nodes.models import Node
from rollout import transitions
from rollout.models import NodeOperation
from rollout.strategy import Strategy

pytestmark = pytest.mark.django_db(transaction=True)
TOKEN = "metrics-token-for-tests"


@pytest.fixture
def metrics_server(request, monkeypatch):
    monkeypatch.setenv("PIDNS_METRICS_TOKEN", TOKEN)
    return request.getfixturevalue("web_server")


def samples(text: str) -> dict:
    """{(name, frozenset(labels)): value} of every sample in a scrape."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_scrape_reports_the_fleet_rollouts_and_operations(metrics_server, make_cluster, make_node):
    east = make_cluster("east")
    make_node(east, "e1")
    make_node(east, "e2", flags={"enable-cri": "false"})
    make_node(east, "e3", kubelet="v1.7.2", docker="1.12.6")
    Node.objects.filter(name="e1").update(drift=True)
    rollout = transitions.rollout_create(
        actor="user:test", name="r", cluster=east, intent="shared", strategy=Strategy(canary_count=0)
    )
    transitions.rollout_start(actor="user:test", rollout=rollout)
    ops = list(rollout.operations.order_by("id"))
    assert len(ops) >= 2
    # Two finished operations, as a worker would have left them: 1.5 s and 40 s.
    NodeOperation.objects.filter(pk=ops[0].pk).update(state="succeeded", duration_seconds=1.5)
    NodeOperation.objects.filter(pk=ops[1].pk).update(state="failed", error_code="timeout", duration_seconds=40.0)

    response = requests.get(f"{metrics_server}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    assert TOKEN not in response.text
    got = samples(response.text)

    truth = {}
    for node in Node.objects.filter(cluster=east):
        key = (node.pid_namespace, node.observed_pid_namespace)
        truth[key] = truth.get(key, 0) + 1
    for (decided, observed), n in truth.items():
        labels = frozenset({"cluster": "east", "pid_namespace": decided, "observed_pid_namespace": observed}.items())
        assert got[("pidns_nodes", labels)] == n
    assert got[("pidns_nodes_drifting", frozenset({"cluster": "east"}.items()))] == 1
    assert got[("pidns_rollouts", frozenset({"status": "running"}.items()))] == 1
    failed = frozenset({"state": "failed", "error_code": "timeout"}.items())
    assert got[("pidns_operations", failed)] == 1
    bucket = lambda le: got[("pidns_operation_duration_seconds_bucket", frozenset({"le": le}.items()))]  # noqa: E731
    assert (bucket("1.0"), bucket("2.0"), bucket("30.0"), bucket("60.0"), bucket("+Inf")) == (0, 1, 1, 2, 2)
    assert got[("pidns_operation_duration_seconds_sum", frozenset())] == 41.5
    assert got[("pidns_operation_duration_seconds_count", frozenset())] == 2
    assert got[("pidns_broker_up", frozenset())] == 1
    assert got[("pidns_broker_queue_depth", frozenset({"queue": "celery"}.items()))] >= 0


def test_a_scrape_without_the_token_is_refused(metrics_server):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Token {TOKEN}"}):
        response = requests.get(f"{metrics_server}/metrics", headers=headers, timeout=30)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert "pidns_" not in response.text


def test_metrics_are_off_until_configured_and_an_allow_list_admits_addresses(settings):
    settings.PIDNS_METRICS_TOKEN = ""
    settings.PIDNS_METRICS_ALLOW_NETWORKS = []
    off = Client().get("/metrics")
    assert off.status_code == 403 and "PIDNS_METRICS_TOKEN" in off.content.decode()
    settings.PIDNS_METRICS_ALLOW_NETWORKS = [ipaddress.ip_network("10.1.0.0/16")]
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="10.2.0.1").get("/metrics").status_code == 401
    assert Client(REMOTE_ADDR="10.1.2.3").post("/metrics").status_code == 405


def test_a_bad_allow_list_stops_the_service_with_the_setting_named(tmp_path):
    import os
    import subprocess
    import sys

    from django.conf import settings as django_settings

    env = {**os.environ, "PIDNS_METRICS_ALLOW_IPS": "10.0.0.0/8,not-an-address", "PIDNS_VAR_DIR": str(tmp_path)}
    result = subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", "check"], cwd=django_settings.BASE_DIR, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "PIDNS_METRICS_ALLOW_IPS" in result.stderr and "not-an-address" in result.stderr
