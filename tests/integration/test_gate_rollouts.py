"""Feature-gate rollouts over simulated kubelets that refuse gates as real ones do: kubelets too new
for a gate are skipped before anything is written, a kubelet that refuses the change fails its
operation and the automatic rollback restores it, and the next audit finds no drift."""

import io

import pytest
from django.core.management import call_command

from nodes.management.commands.simfleet import register
from nodes.models import Cluster, Node
from rollout import transitions
from rollout.planning import GATES, Change
from rollout.strategy import Strategy
from tests.conftest import fleet_spec, node_group
from tests.rollout_driver import drive

pytestmark = pytest.mark.django_db(transaction=True)
GATE = "DynamicKubeletConfig"  # deprecated in 1.22-1.25, removed in 1.26


@pytest.fixture(autouse=True)
def fast(settings):
    settings.PIDNS_VERIFY_POLL = 0.05
    settings.PIDNS_VERIFY_TIMEOUT = 5
    settings.PIDNS_DRIVER_TIMEOUT = 3


@pytest.fixture
def fleet(run_fleet):
    fleet = run_fleet(
        fleet_spec(
            node_group("a-refuses", kubelet="v1.25.4", docker="18.06.1-ce", faults={"refuses_gates": [GATE]}),
            node_group("k125-{i}", count=17, kubelet="v1.25.4", docker="18.06.1-ce"),
            node_group("k126-{i}", count=2, kubelet="v1.26.1", docker="18.06.1-ce"),
            plan="upstream",
        ),
        sync_interval=0.05,
    )
    register(fleet)
    call_command("audit", quiet=True, stdout=io.StringIO())
    return fleet


def gate_rollout(cluster, names=None, **strategy):
    return transitions.rollout_start(
        actor="user:test",
        rollout=transitions.rollout_create(
            actor="user:test",
            name="gates",
            cluster=cluster,
            change=Change(GATES, gates={GATE: False}),
            selector={"nodes": names} if names else {},
            strategy=Strategy(**strategy),
        ),
    )


def test_a_refused_gate_is_rolled_back_and_kubelets_too_new_are_skipped(fleet):
    cluster = Cluster.objects.get(name="sim")
    # The canary is the node whose kubelet refuses the gate: it fails, and the rollout restores it.
    first = drive(gate_rollout(cluster, canary_count=1, batch_size=5, max_unavailable=5, max_failures=0))
    assert first.status == "rolled-back", first.reason
    canary = first.operations.get(phase="forward", node__name="a-refuses")
    assert (canary.state, canary.error_code) == ("failed", "kubelet-refused")
    assert "unrecognized feature gate: DynamicKubeletConfig" in canary.error
    assert first.operations.get(phase="rollback", node__name="a-refuses").state == "succeeded"
    refusing = fleet.node("sim", "a-refuses")
    assert refusing.running and refusing.flags() == {}
    skipped = dict(first.operations.filter(state="skipped").values_list("node__name", "skip_reason"))
    assert set(skipped) == {"k126-01", "k126-02"}
    assert all(reason.startswith("GATE_REMOVED: unrecognized feature gate") for reason in skipped.values())
    assert not first.operations.filter(phase="forward", node__name__startswith="k125", changed=True).exists()

    # The rest, without the refusing node.
    names = [f"k125-{i:02d}" for i in range(1, 18)] + ["k126-01", "k126-02"]
    second = drive(gate_rollout(cluster, names, canary_count=1, batch_size=8, max_unavailable=8))
    assert second.status == "succeeded", second.reason
    assert second.reason == "17 nodes changed, 2 skipped, 0 failed"
    for node in Node.objects.filter(name__startswith="k125"):
        assert node.desired_gate_map() == {GATE: False} and node.observed_gates == {GATE: False}
        assert fleet.node("sim", node.name).flags() == {"feature-gates": f"{GATE}=false"}
        assert node.ready is True
    proof = second.operations.filter(state="succeeded").first().proof[0]
    assert proof.startswith("kubelet v1.25.4 running with --feature-gates=DynamicKubeletConfig=false")
    out = io.StringIO()
    call_command("audit", quiet=True, stdout=out)
    assert "20 nodes read, 0 failed, 0 drifted" in out.getvalue()


def test_the_preview_lists_the_blocked_nodes_per_problem(fleet, admin):
    response = admin.post(
        "/api/v1/rollouts/preview/",
        {"cluster": "sim", "kind": "gates", "feature_gates": {GATE: False}},
        format="json",
    )
    assert response.status_code == 200, response.json()
    preview = response.json()
    assert preview["skipped_by_code"] == {"GATE_REMOVED": ["k126-01", "k126-02"]}
    assert len(preview["targets"]) == 18
    assert preview["targets"][0]["flag_changes"] == {"feature-gates": {"from": None, "to": f"{GATE}=false"}}
    assert "GATE_DEPRECATED" in preview["targets"][0]["warnings"]
    bad = admin.post("/api/v1/rollouts/preview/", {"cluster": "sim", "kind": "gates"}, format="json")
    assert bad.status_code == 400 and "feature_gates" in bad.json()
