"""Rollouts through the API and the command, carried out by a real Celery worker."""

import io
import time

import pytest
from django.core.management import CommandError, call_command

from nodes.management.commands.simfleet import register
from tests.conftest import fleet_spec, node_group

pytestmark = pytest.mark.django_db(transaction=True)
ISOLATED_16 = {"enable-cri": "false"}
URL = "/api/v1/rollouts/"


@pytest.fixture(autouse=True)
def fast(settings):
    settings.PIDNS_VERIFY_POLL = 0.05
    settings.PIDNS_VERIFY_TIMEOUT = 3


@pytest.fixture
def lab(run_fleet):
    fleet = run_fleet(
        fleet_spec(
            node_group("n-{i}", count=4, kubelet_flags=ISOLATED_16, labels={"pool": "gpu"}),
            node_group("k17", kubelet="v1.7.3"),
        ),
        sync_interval=0.05,
    )
    register(fleet)
    call_command("audit", quiet=True, stdout=io.StringIO())
    return fleet


def wait_for(client, url, statuses, timeout=30):
    deadline = time.monotonic() + timeout
    body = client.get(url).json()
    while body["status"] not in statuses and time.monotonic() < deadline:
        time.sleep(0.1)
        body = client.get(url).json()
    return body


def test_rollout_from_the_api(lab, clients, celery_worker_thread):
    operator, viewer = clients["operator"], clients["viewer"]
    body = {
        "cluster": "sim",
        "intent": "shared",
        "selector": {"labels": {"pool": "gpu"}},
        "canary_count": 1,
        "batch_size": "50%",
        "max_unavailable": 2,
        "pause_after_canary": True,
    }
    preview = viewer.post(f"{URL}preview/", body, format="json")
    assert preview.status_code == 200
    assert preview.json()["waves"] == [["n-01"], ["n-02", "n-03"], ["n-04"]]
    created = operator.post(URL, body, format="json")
    assert created.status_code == 202, created.json()
    url = created.json()["url"]
    assert created.json()["status"] == "draft" and created["Location"] == url
    assert operator.post(f"{url}start/").status_code == 202
    assert wait_for(viewer, url, ["awaiting-approval"])["status"] == "awaiting-approval"
    assert operator.post(f"{url}approve/").status_code == 202
    done = wait_for(viewer, url, ["succeeded", "failed", "rolled-back"])
    assert done["status"] == "succeeded", done["reason"]
    assert (done["total"], done["done"], done["failed"], done["progress"]) == (4, 4, 0, 100)
    assert done["counts"]["forward"] == {"succeeded": 4}
    assert [w["size"] for w in done["waves"]] == [1, 2, 1]
    op = next(o for o in done["operations"] if o["node"] == "n-02")
    assert (op["before_flags"], op["after_flags"], op["state"]) == (ISOLATED_16, {"enable-cri": "true"}, "succeeded")
    actors = {e["actor"] for e in done["events"]}
    assert "token:operator-user" in actors and any(a.startswith("task:") for a in actors)
    events = viewer.get(f"/api/v1/events/?object_type=rollout&object_id={done['id']}&actor=token:operator-user").json()
    assert {e["verb"] for e in events["results"]} == {"create", "start", "approve"}
    # Rollback through the API, then the 409 of a second rollback.
    assert operator.post(f"{url}rollback/").status_code == 202
    back = wait_for(viewer, url, ["rolled-back", "failed"])
    assert back["status"] == "rolled-back", back["reason"]
    again = operator.post(f"{url}rollback/")
    assert again.status_code == 409 and "cannot rollback a rollout that is rolled-back" in str(again.json())


def test_viewer_cannot_act(lab, clients):
    created = clients["operator"].post(URL, {"cluster": "sim", "intent": "shared"}, format="json")
    url = created.json()["url"]
    for verb in ("start", "pause", "resume", "abort", "approve", "rollback"):
        assert clients["viewer"].post(f"{url}{verb}/").status_code == 403
    assert clients["viewer"].post(URL, {"cluster": "sim", "intent": "shared"}, format="json").status_code == 403
    assert clients["anon"].get(URL).status_code == 401


@pytest.mark.parametrize(
    "body, field",
    [
        ({"cluster": "nowhere", "intent": "shared"}, "cluster"),
        ({"cluster": "sim", "intent": "per-pod"}, "intent"),
        ({"cluster": "sim", "intent": "shared", "batch_size": "lots"}, "batch_size"),
        ({"cluster": "sim", "intent": "shared", "max_unavailable": 0}, "max_unavailable"),
        ({"cluster": "sim", "intent": "shared", "window": {"start": "25:00", "end": "02:00"}}, "window"),
        ({"cluster": "sim", "intent": "shared", "selector": {"labels": {"bad key!": "x"}}}, "selector"),
        ({"cluster": "sim", "intent": "shared", "busy_policy": "shove"}, "busy_policy"),
    ],
)
def test_bad_rollout_input_names_the_field(lab, clients, body, field):
    response = clients["operator"].post(URL, body, format="json")
    assert response.status_code == 400
    assert field in response.json(), response.json()


@pytest.mark.parametrize(
    "body, error",
    [
        (
            {"window": {"start": "22:00", "end": "02:00", "tz": "Mars/Olympus"}},
            {"window": {"tz": ["unknown time zone 'Mars/Olympus'"]}},
        ),
        ({"window": {"start": "22:00", "end": "2am"}}, {"window": {"end": ["end must be HH:MM (24-hour)"]}}),
        (
            {"selector": {"nodes": ["n-01", "typo-1"]}},
            {"selector": {"nodes": ["no node named typo-1 in cluster sim"]}},
        ),
    ],
)
def test_bad_rollout_input_names_the_part_of_the_field(lab, clients, body, error):
    response = clients["operator"].post(URL, {"cluster": "sim", "intent": "shared", **body}, format="json")
    assert response.status_code == 400 and response.json() == error


def test_busy_nodes_conflict(lab, clients):
    first = clients["operator"].post(URL, {"cluster": "sim", "intent": "shared"}, format="json")
    assert first.status_code == 202
    second = clients["operator"].post(URL, {"cluster": "sim", "intent": "shared"}, format="json")
    assert second.status_code == 409
    assert "is in unfinished rollout" in str(second.json()["nodes"])


def test_rollout_command_creates_starts_and_follows(lab, celery_worker_thread):
    out = io.StringIO()
    call_command("rollout", "preview", "--cluster", "sim", "--intent", "shared", "--node", "n-01", stdout=out)
    assert "1 nodes to change in 1 waves" in out.getvalue()
    assert "change n-01: enable-cri: false -> true" in out.getvalue()
    out = io.StringIO()
    call_command(
        "rollout",
        "create",
        "--cluster",
        "sim",
        "--intent",
        "shared",
        "--label",
        "pool=gpu",
        "--batch",
        "2",
        "--max-unavailable",
        "2",
        "--start",
        "--follow",
        stdout=out,
    )
    text = out.getvalue()
    assert "running" in text and "4/4 done" in text
    assert text.strip().splitlines()[-1].startswith("rollout ") and "succeeded" in text.strip().splitlines()[-1]


def test_rollout_command_errors(lab):
    with pytest.raises(CommandError, match="batch_size"):
        call_command("rollout", "create", "--cluster", "sim", "--intent", "shared", "--batch", "0%")
    with pytest.raises(CommandError, match="no rollout 999"):
        call_command("rollout", "pause", "999")
    with pytest.raises(CommandError, match="--label"):
        call_command("rollout", "preview", "--cluster", "sim", "--intent", "shared", "--label", "nope")


def test_a_wait_longer_than_a_message_countdown_travels_in_hops(run_fleet, clients, celery_worker_thread, monkeypatch):
    """Slow kubelets make verification wait longer than a message's countdown may be: the step's
    message hops until it is due, so the rollout ends without the reconciler (no beat runs here)."""
    from rollout import tasks

    monkeypatch.setattr(tasks, "MAX_COUNTDOWN", 0.2)
    fleet = run_fleet(
        fleet_spec(node_group("slow-{i}", count=2, kubelet_flags=ISOLATED_16, faults={"restart_ms": 1500})),
        sync_interval=0.05,
    )
    register(fleet)
    call_command("audit", quiet=True, stdout=io.StringIO())
    operator = clients["operator"]
    body = {"cluster": "sim", "intent": "shared", "canary_count": 0, "max_unavailable": 2, "start": True}
    created = operator.post(URL, body, format="json")
    assert created.status_code == 202, created.json()
    done = wait_for(operator, created.json()["url"], ["succeeded", "failed", "rolled-back"])
    assert done["status"] == "succeeded", done["reason"]
    assert done["counts"]["forward"] == {"succeeded": 2}
