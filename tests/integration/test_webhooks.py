"""Notifications: webhooks per event kind, HMAC-signed, delivered by a real Celery worker to a local
HTTP receiver, retried with backoff when the receiver fails, each try in the delivery log."""

import hashlib
import hmac
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import call_command

from core.models import AuditEvent, WebhookDelivery
from nodes.management.commands.simfleet import register
from tests.conftest import fleet_spec, node_group

pytestmark = pytest.mark.django_db(transaction=True)
SECRET = "a-secret-of-sixteen-or-more"


class Receiver:
    """A local HTTP receiver: records every request; answers the first ``fail_first`` with 500."""

    def __init__(self, fail_first=0):
        self.requests: list[dict] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (the http.server API)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                failing = len(receiver.requests) <= receiver.fail_first
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.requests) < count:
            time.sleep(0.05)
        assert len(self.requests) >= count, self.requests
        return self.requests


@pytest.fixture
def receiver():
    made = []

    def make(fail_first=0):
        made.append(Receiver(fail_first))
        return made[-1]

    yield make
    for one in made:
        one.server.shutdown()


@pytest.fixture(autouse=True)
def fast(settings):
    settings.PIDNS_VERIFY_POLL = 0.05
    settings.PIDNS_VERIFY_TIMEOUT = 5
    settings.PIDNS_WEBHOOK_BACKOFF = 0.2
    settings.PIDNS_BASE_URL = "https://pidns.example.com"


@pytest.fixture
def lab(run_fleet):
    fleet = run_fleet(
        fleet_spec(node_group("n-{i}", count=2, kubelet_flags={"enable-cri": "false"})), sync_interval=0.05
    )
    register(fleet)
    call_command("audit", quiet=True, stdout=io.StringIO())
    return fleet


def hook(clients, name, url, events, fmt="json"):
    body = {"name": name, "url": url, "secret": SECRET, "events": events, "format": fmt}
    response = clients["admin"].post("/api/v1/webhooks/", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def wait_status(clients, rollout_id, status, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = clients["viewer"].get(f"/api/v1/rollouts/{rollout_id}/").json()
        if body["status"] == status:
            return body
        time.sleep(0.1)
    raise AssertionError(body["status"])


def test_rollout_events_reach_their_hooks_signed_retried_and_logged(lab, clients, receiver, celery_worker_thread):
    flaky, slack = receiver(fail_first=1), receiver()
    signed = hook(clients, "pager", f"{flaky.url}/hook", ["awaiting-approval", "succeeded"])
    assert "secret" not in signed and SECRET not in json.dumps(signed)
    hook(clients, "chat", f"{slack.url}/slack", ["succeeded", "failed"], fmt="slack")

    body = {"cluster": "sim", "intent": "shared", "canary_count": 1, "pause_after_canary": True, "start": True}
    created = clients["operator"].post("/api/v1/rollouts/", body, format="json").json()
    wait_status(clients, created["id"], "awaiting-approval")
    # The first try fails (500), the second, after the backoff, is delivered.
    first, second = flaky.wait_for(2)
    assert first["body"] == second["body"]
    message = json.loads(second["body"])
    assert message["kind"] == "awaiting-approval" and message["rollout"] == created["id"]
    assert message["url"] == f"https://pidns.example.com/rollouts/{created['id']}/"
    stamp = second["headers"]["X-Pidns-Timestamp"]
    expected = hmac.new(SECRET.encode(), stamp.encode() + b"." + second["body"], hashlib.sha256).hexdigest()
    assert second["headers"]["X-Pidns-Signature"] == f"sha256={expected}"
    assert second["headers"]["X-Pidns-Event"] == "awaiting-approval"
    assert slack.requests == []  # the chat hook does not ask for approvals

    assert clients["operator"].post(f"/api/v1/rollouts/{created['id']}/approve/").status_code == 202
    wait_status(clients, created["id"], "succeeded")
    assert json.loads(flaky.wait_for(3)[2]["body"])["kind"] == "succeeded"
    text = json.loads(slack.wait_for(1)[0]["body"])
    assert set(text) == {"text"} and text["text"].startswith(":white_check_mark: rollout #")
    assert "succeeded" in text["text"] and "<https://pidns.example.com/rollouts/" in text["text"]

    log = clients["admin"].get(f"/api/v1/webhooks/{signed['id']}/deliveries/").json()["results"]
    assert [(d["kind"], d["status"]) for d in log] == [("succeeded", "delivered"), ("awaiting-approval", "delivered")]
    assert log[1]["attempts"] == 2 and log[1]["response_code"] == 204
    assert clients["operator"].get(f"/api/v1/webhooks/{signed['id']}/deliveries/").status_code == 403
    assert AuditEvent.objects.filter(object_type="webhook", verb="create").count() == 2
    assert not AuditEvent.objects.filter(after__icontains=SECRET).exists()


def test_a_receiver_that_refuses_is_given_up_on_and_drift_is_announced(lab, clients, receiver, celery_worker_thread):
    gone = receiver(fail_first=100)
    hook(clients, "gone", gone.url, ["drift-found"])
    # Drift behind the service's back: the flag it manages is edited on the node.
    node = lab.node("sim", "n-01")
    clients["admin"].patch(
        f"/api/v1/nodes/{_node_id('n-01')}/", {"desired_flags": {"enable-cri": "false"}}, format="json"
    )
    (node.kubelet_dir / "20-pidns.conf").write_text('[Service]\nEnvironment="KUBELET_PIDNS_ARGS="\n')
    call_command("audit", quiet=True, stdout=io.StringIO())
    requests = gone.wait_for(6, timeout=60)  # six tries, then it gives up
    message = json.loads(requests[0]["body"])
    assert message["kind"] == "drift-found" and message["nodes"] == ["sim/n-01"] and message["drifted"] == 1
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and WebhookDelivery.objects.get().status == "pending":
        time.sleep(0.05)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("failed", 6, 500)
    time.sleep(0.5)
    assert len(gone.requests) == 6


def _node_id(name):
    from nodes.models import Node

    return Node.objects.get(name=name).pk


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"events": ["exploded"]}, "events"),
        ({"events": []}, "events"),
        ({"secret": "short"}, "secret"),
        ({"format": "xml"}, "format"),
    ],
)
def test_a_bad_webhook_is_refused_naming_the_field(clients, change, field):
    body = {"name": "h", "url": "https://example.com/hook", "secret": SECRET, "events": ["failed"], **change}
    response = clients["admin"].post("/api/v1/webhooks/", body, format="json")
    assert response.status_code == 400 and field in response.json()
    assert clients["operator"].post("/api/v1/webhooks/", body, format="json").status_code == 403
