"""Health-gated canary: when the canary wave ends its evidence (verified, Ready, container
restarts since the change) is gathered, shown on the approval step, and may decide by itself."""

import io

import pytest
from django.core.management import call_command

from core.models import AuditEvent
from nodes.management.commands.simfleet import register
from nodes.models import Cluster
from rollout import selectors, transitions
from rollout.models import NodeOperation
from rollout.strategy import Strategy
from tests.integration.test_dashboard import signed_in
from tests.integration.test_kube import kube_spec
from tests.rollout_driver import drive

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fast(settings):
    settings.PIDNS_VERIFY_POLL = 0.05
    settings.PIDNS_VERIFY_TIMEOUT = 5
    settings.PIDNS_DRAIN_RETRY_MAX = 0.5


def start(cluster, **options):
    rollout = transitions.rollout_create(
        actor="user:test",
        name="canary",
        cluster=cluster,
        intent="shared",
        strategy=Strategy(canary_count=1, batch_size=10, max_unavailable=2, **options.pop("strategy", {})),
        **options,
    )
    return transitions.rollout_start(actor="user:test", rollout=rollout)


def sim(run_fleet, **faults):
    spec = (
        kube_spec(3, [{"kind": "DaemonSet", "name": "agent"}], faults=faults)
        if faults
        else kube_spec(3, [{"kind": "DaemonSet", "name": "agent"}])
    )
    fleet = run_fleet(spec, sync_interval=0.05)
    register(fleet)
    call_command("audit", quiet=True, stdout=io.StringIO())
    return fleet, Cluster.objects.get(name="kc")


def test_a_healthy_canary_promotes_itself(run_fleet):
    fleet, cluster = sim(run_fleet)
    page = signed_in("reader").get(f"/rollouts/{start(cluster, canary_analysis=True).pk}/").content.decode()
    assert "its health (verified, Ready, container restarts) decides" in page
    rollout = drive(NodeOperation.objects.first().rollout)
    assert rollout.status == "succeeded", rollout.reason
    evidence = rollout.canary_evidence
    assert evidence["healthy"] is True and len(evidence["nodes"]) == 1
    canary = evidence["nodes"][0]
    assert canary["verified"] and canary["ready"] is True and canary["restarts"] == 0 and canary["problems"] == []
    assert AuditEvent.objects.filter(verb="canary-promoted", object_id=str(rollout.pk)).exists()
    assert NodeOperation.objects.filter(rollout=rollout, state="succeeded").count() == 3
    timeline = selectors.rollout_timeline(rollout)["waves"][0]["after"]
    assert timeline == [("analysis", "canary analysis: healthy: the rollout went on")]


def test_a_canary_whose_pods_crash_is_rolled_back_before_the_other_nodes_are_touched(run_fleet):
    fleet, cluster = sim(run_fleet, pod_restarts=3)
    rollout = drive(start(cluster, canary_analysis=True))
    assert rollout.status == "rolled-back", rollout.reason
    assert "canary analysis failed: kc-01: 3 container restarts since the change" in rollout.reason
    forward = NodeOperation.objects.filter(rollout=rollout, phase="forward")
    assert forward.filter(state="succeeded").count() == 1  # the canary only
    assert forward.filter(state="cancelled").count() == 2  # the others never started
    assert NodeOperation.objects.filter(rollout=rollout, phase="rollback", state="succeeded").count() == 1
    assert {n.spec.name: n.restarts for n in fleet.nodes} == {"kc-01": 2, "kc-02": 0, "kc-03": 0}
    page = signed_in("reader").get(f"/rollouts/{rollout.pk}/").content.decode()
    assert "Not healthy" in page and "3 container restarts since the change" in page


def test_without_analysis_the_evidence_waits_on_the_approval_step(run_fleet):
    fleet, cluster = sim(run_fleet, pod_restarts=2)
    rollout = drive(start(cluster, strategy={"pause_after_canary": True}))
    assert rollout.status == "awaiting-approval"
    assert rollout.canary_evidence["healthy"] is False  # shown, the operator decides
    page = signed_in("reader").get(f"/rollouts/{rollout.pk}/").content.decode()
    assert "read it before you approve" in page and "2 container restarts since the change" in page
    transitions.rollout_approve(actor="user:olga", rollout=rollout)
    assert drive(rollout).status == "succeeded"
