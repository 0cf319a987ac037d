"""The rollout timeline: per wave its start, end and duration, the approval after the canary
(announced before it happens), the soak, and the maintenance window in its own time zone."""

import io
from datetime import UTC, datetime

import pytest
from django.core.management import call_command

from nodes.management.commands.simfleet import register
from nodes.models import Cluster
from rollout import selectors, transitions
from rollout.strategy import Strategy, Window
from tests.conftest import fleet_spec, node_group
from tests.integration.test_dashboard import signed_in
from tests.rollout_driver import drive

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fast(settings):
    settings.PIDNS_VERIFY_POLL = 0.05
    settings.PIDNS_VERIFY_TIMEOUT = 5


def test_the_timeline_announces_the_approval_then_records_each_wave(run_fleet):
    fleet = run_fleet(
        fleet_spec(node_group("n-{i}", count=3, kubelet_flags={"enable-cri": "false"})), sync_interval=0.05
    )
    register(fleet)
    call_command("audit", quiet=True, stdout=io.StringIO())
    cluster = Cluster.objects.get(name="sim")
    rollout = transitions.rollout_create(
        actor="user:test",
        name="t",
        cluster=cluster,
        intent="shared",
        strategy=Strategy(canary_count=1, batch_size=1, max_unavailable=1, soak_seconds=1, pause_after_canary=True),
    )
    timeline = selectors.rollout_timeline(rollout)
    assert [w["label"] for w in timeline["waves"]] == ["canary", "wave 1", "wave 2"]
    # Before anything happens, the page says the canary will wait for an approval, and the soaks.
    assert timeline["waves"][0]["after"][0] == ("approval", "then the rollout waits for an operator's approval")
    assert ("soak", "then a soak of 1 s") in timeline["waves"][1]["after"]
    assert timeline["waves"][2]["after"] == []  # nothing comes after the last wave
    page = signed_in("reader").get(f"/rollouts/{rollout.pk}/").content.decode()
    assert "Then the rollout waits for an operator&#x27;s approval" in page

    rollout = transitions.rollout_start(actor="user:test", rollout=rollout)
    rollout = drive(rollout)
    assert rollout.status == "awaiting-approval"
    canary = selectors.rollout_timeline(rollout)["waves"][0]
    assert canary["started"] and canary["ended"] and canary["seconds"] >= 0
    assert canary["after"][0][1].startswith("waiting for approval since ") and canary["after"][0][1].endswith("UTC")

    transitions.rollout_approve(actor="user:olga", rollout=rollout)
    rollout = drive(rollout)
    assert rollout.status == "succeeded"
    waves = selectors.rollout_timeline(rollout)["waves"]
    assert waves[0]["after"][0][1].startswith("approved ") and waves[0]["after"][0][1].endswith("by user:olga")
    assert ("soak", "soaked 1 s") in waves[1]["after"]
    assert all(w["seconds"] is not None for w in waves)
    assert (waves[2]["started"] - waves[1]["ended"]).total_seconds() >= 1  # the soak came between them
    api = signed_in("reader2").get(f"/api/v1/rollouts/{rollout.pk}/").json()["timeline"]
    assert [w["label"] for w in api["waves"]] == ["canary", "wave 1", "wave 2"]
    assert api["waves"][1]["after"] == [{"kind": "soak", "text": "soaked 1 s"}]


def test_a_closed_window_says_when_it_opens_in_its_own_time_zone(make_cluster):
    cluster = make_cluster("w")
    window = {"days": ["sat", "sun"], "start": "22:00", "end": "04:00", "tz": "Europe/Paris"}
    rollout = transitions.rollout_create(
        actor="user:test",
        name="w",
        cluster=cluster,
        intent="shared",
        strategy=Strategy(window=Window.parse(window)),
    )
    friday_noon = datetime(2026, 12, 4, 11, 0, tzinfo=UTC)  # a Friday, 12:00 in Paris
    text = selectors.rollout_timeline(rollout, now=friday_noon)["window"]
    assert text == ("maintenance window Sat, Sun 22:00-04:00 Europe/Paris: closed; opens Sat 22:00 CET (in 34 h 0 min)")
    saturday_night = datetime(2026, 12, 5, 22, 30, tzinfo=UTC)
    assert selectors.rollout_timeline(rollout, now=saturday_night)["window"].endswith(": open now")
