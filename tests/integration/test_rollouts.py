"""Rollouts over simulated nodes, run in the test process: the state machine, the failure
budget, rollback, operator controls, busy nodes, and the preview."""

import io
import threading

import pytest
from django.core.management import call_command

from core.models import AuditEvent
from drivers.docker_engine import DockerEngineDriver
from drivers.dropin import render_dropin
from nodes.access import endpoint_for
from nodes.management.commands.simfleet import register
from nodes.models import Cluster, Node, NodeObservation
from rollout import advancer, operations, recovery, selectors, transitions
from rollout.errors import RolloutConflict
from rollout.models import NodeOperation, Rollout
from rollout.planning import PID, Change
from rollout.strategy import Strategy, Window
from tests.conftest import fleet_spec, node_group
from tests.rollout_driver import drive, run_operation

pytestmark = pytest.mark.django_db(transaction=True)
ISOLATED_16 = {"enable-cri": "false"}


@pytest.fixture(autouse=True)
def fast(settings):
    settings.PIDNS_VERIFY_POLL = 0.05
    settings.PIDNS_VERIFY_TIMEOUT = 3
    settings.PIDNS_DRIVER_TIMEOUT = 2


@pytest.fixture
def sim(run_fleet):
    def make(*groups, plan="proposal"):
        fleet = run_fleet(fleet_spec(*groups, plan=plan), sync_interval=0.05)
        register(fleet)
        call_command("audit", quiet=True, stdout=io.StringIO())
        return fleet, Cluster.objects.get(name="sim")

    return make


def create(cluster, intent="shared", start=True, selector=None, **strategy):
    rollout = transitions.rollout_create(
        actor="user:test",
        name="r",
        cluster=cluster,
        intent=intent,
        strategy=Strategy(**strategy),
        selector=selector or {},
    )
    if start:
        rollout = transitions.rollout_start(actor="user:test", rollout=rollout)
    return rollout


def observed(fleet, name):
    node = Node.objects.get(name=name)
    return DockerEngineDriver().facts(endpoint_for(node))


def states(rollout, phase="forward"):
    return dict(rollout.operations.filter(phase=phase).values_list("node__name", "state"))


def test_rollout_to_shared_changes_every_node_and_verifies_it(sim):
    fleet, cluster = sim(node_group("n-{i}", count=5, kubelet_flags=ISOLATED_16))
    rollout = drive(create(cluster, batch_size=2, max_unavailable=2))
    assert rollout.status == "succeeded", rollout.reason
    assert set(states(rollout).values()) == {"succeeded"}
    for name in states(rollout):
        facts = observed(fleet, name)
        assert (facts.observed_pid_namespace, facts.kubelet_flags) == ("shared", {"enable-cri": "true"})
    op = rollout.operations.get(node__name="n-03")
    assert (op.before_flags, op.before_mode, op.after_flags) == (ISOLATED_16, "isolated", {"enable-cri": "true"})
    assert op.proof and "sandbox's tini" in op.proof[0] and op.wave == 1 and op.attempts == 1
    verbs = list(
        AuditEvent.objects.filter(object_type="rollout", object_id=str(rollout.pk)).values_list("verb", flat=True)
    )
    assert verbs.count("operation-succeeded") == 5 and {"create", "start", "finish"} <= set(verbs)


def test_preview_lists_targets_waves_skips_and_duration(sim, make_node):
    fleet, cluster = sim(
        node_group("iso-{i}", count=3, kubelet_flags=ISOLATED_16),
        node_group("shared"),
        node_group("old", docker="1.11.2"),
        node_group("down", faults={"unreachable": True}),
        node_group("k17", kubelet="v1.7.3"),
    )
    make_node(cluster, "paper")
    Node.objects.filter(name="iso-03").update(managed=False)
    before = (Rollout.objects.count(), NodeOperation.objects.count())
    preview = selectors.rollout_preview(
        cluster=cluster,
        selector={},
        change=Change(PID, intent="shared"),
        strategy=Strategy(canary_count=1, batch_size=5),
    )
    assert [t["node"] for t in preview["targets"]] == ["iso-01", "iso-02"]
    assert preview["targets"][0]["flag_changes"] == {"enable-cri": {"from": "false", "to": "true"}}
    assert preview["waves"] == [["iso-01"], ["iso-02"]]
    skipped = {s["node"]: s["code"] for s in preview["skipped"]}
    assert skipped == {
        "down": "unreachable",
        "iso-03": "unmanaged",
        "k17": "already-shared",
        "old": "engine-too-old",
        "paper": "no-endpoint",
        "shared": "already-shared",
    }
    assert preview["predicted_seconds"] == 60.0  # two waves of one slot at the default 30 s per node
    isolated = selectors.rollout_preview(
        cluster=cluster, selector={"labels": {}}, change=Change(PID, intent="isolated"), strategy=Strategy()
    )
    assert {s["node"]: s["code"] for s in isolated["skipped"]}["k17"] == "ROLLBACK_REQUIRES_DOWNGRADE"
    assert (Rollout.objects.count(), NodeOperation.objects.count()) == before


def test_selector_by_label_and_name(sim):
    _, cluster = sim(
        node_group("a-{i}", count=3, kubelet_flags=ISOLATED_16, labels={"pool": "gpu"}),
        node_group("b-{i}", count=2, kubelet_flags=ISOLATED_16, labels={"pool": "general"}),
    )
    by_label = selectors.rollout_preview(
        cluster=cluster, selector={"labels": {"pool": "gpu"}}, change=Change(PID, intent="shared"), strategy=Strategy()
    )
    assert [t["node"] for t in by_label["targets"]] == ["a-01", "a-02", "a-03"]
    by_name = selectors.rollout_preview(
        cluster=cluster, selector={"nodes": ["b-02", "a-01"]}, change=Change(PID, intent="shared"), strategy=Strategy()
    )
    assert [t["node"] for t in by_name["targets"]] == ["a-01", "b-02"]


def test_failure_budget_exceeded_rolls_back_every_changed_node(sim):
    fleet, cluster = sim(
        node_group("ok-{i}", count=3, kubelet_flags=ISOLATED_16),
        node_group("ro", kubelet_flags=ISOLATED_16, faults={"apply_fails": True}),
    )
    rollout = drive(create(cluster, canary_count=0, batch_size=10, max_unavailable=4, max_failures=0))
    assert rollout.status == "rolled-back", rollout.reason
    assert "failure budget exceeded: 1 failed, at most 0 allowed" in rollout.reason
    assert states(rollout)["ro"] == "failed"
    assert rollout.operations.get(node__name="ro").error_code == "apply-failed"
    assert set(states(rollout, "rollback").values()) == {"succeeded"}
    for name in ("ok-01", "ok-02", "ok-03"):
        facts = observed(fleet, name)
        assert (facts.observed_pid_namespace, facts.kubelet_flags) == ("isolated", ISOLATED_16)


def test_node_that_never_verifies_fails_and_the_budget_holds(sim):
    _, cluster = sim(
        node_group("ok-{i}", count=2, kubelet_flags=ISOLATED_16),
        node_group("stuck", kubelet_flags=ISOLATED_16, faults={"verify_never_converges": True}),
    )
    rollout = drive(create(cluster, canary_count=0, max_failures=1, max_unavailable=3))
    assert rollout.status == "succeeded"
    assert rollout.reason == "2 nodes changed, 0 skipped, 1 failed"
    stuck = rollout.operations.get(node__name="stuck")
    assert (stuck.state, stuck.error_code) == ("failed", "verify-timeout")


def test_unreachable_at_preflight_is_retried_then_fails_without_auto_rollback(sim, settings):
    fleet, cluster = sim(node_group("a", kubelet_flags=ISOLATED_16), node_group("b", kubelet_flags=ISOLATED_16))
    rollout = create(cluster, canary_count=0, auto_rollback=False, max_unavailable=2)
    fleet.thread.run(fleet.take_down, fleet.node("sim", "b"))
    rollout = drive(rollout)
    assert rollout.status == "failed"
    assert "failure budget exceeded" in rollout.reason
    op = rollout.operations.get(node__name="b")
    assert (op.state, op.error_code, op.attempts) == ("failed", "unreachable", settings.PIDNS_OPERATION_MAX_ATTEMPTS)
    assert not rollout.operations.filter(phase="rollback").exists()
    assert observed(fleet, "a").observed_pid_namespace == "shared"  # left as it is, as asked


def test_pause_after_canary_waits_for_approval(sim):
    _, cluster = sim(node_group("n-{i}", count=4, kubelet_flags=ISOLATED_16))
    rollout = drive(create(cluster, canary_count=1, batch_size=3, pause_after_canary=True))
    assert rollout.status == "awaiting-approval"
    assert list(states(rollout).values()).count("succeeded") == 1
    with pytest.raises(RolloutConflict):
        transitions.rollout_resume(actor="user:test", rollout=rollout)
    transitions.rollout_approve(actor="user:approver", rollout=rollout)
    rollout = drive(rollout)
    assert rollout.status == "succeeded"
    assert AuditEvent.objects.filter(verb="approve", actor="user:approver").exists()


def test_pause_resume_and_abort(sim):
    _, cluster = sim(node_group("n-{i}", count=4, kubelet_flags=ISOLATED_16))
    rollout = create(cluster, canary_count=0, batch_size=1, max_unavailable=1)
    advancer.rollout_advance(rollout_id=rollout.pk)
    transitions.rollout_pause(actor="user:test", rollout=rollout)
    assert advancer.rollout_advance(rollout_id=rollout.pk).dispatched == []
    transitions.rollout_resume(actor="user:test", rollout=rollout)
    transitions.rollout_abort(actor="user:test", rollout=rollout)
    rollout.refresh_from_db()
    assert rollout.status == "aborted"
    assert set(states(rollout).values()) == {"cancelled"}
    with pytest.raises(RolloutConflict, match="cannot start a rollout that is aborted"):
        transitions.rollout_start(actor="user:test", rollout=rollout)


def test_soak_between_waves(sim):
    _, cluster = sim(node_group("n-{i}", count=2, kubelet_flags=ISOLATED_16))
    rollout = create(cluster, canary_count=1, batch_size=1, soak_seconds=1)
    first = advancer.rollout_advance(rollout_id=rollout.pk).dispatched
    run_operation(first[0])
    soaking = advancer.rollout_advance(rollout_id=rollout.pk)
    assert soaking.dispatched == [] and 0 < soaking.recheck_in <= 1
    rollout.refresh_from_db()
    assert rollout.reason == "soaking 1s after wave 0"
    rollout = drive(rollout)
    assert rollout.status == "succeeded"


def test_closed_window_starts_nothing(sim):
    _, cluster = sim(node_group("n-{i}", count=2, kubelet_flags=ISOLATED_16))
    from django.utils import timezone

    now = timezone.now()
    closed = Window.parse(
        {
            "start": (now.replace(hour=(now.hour + 2) % 24)).strftime("%H:00"),
            "end": (now.replace(hour=(now.hour + 3) % 24)).strftime("%H:00"),
        }
    )
    rollout = create(cluster, window=closed)
    result = advancer.rollout_advance(rollout_id=rollout.pk)
    rollout.refresh_from_db()
    assert result.dispatched == [] and result.recheck_in
    assert rollout.reason.startswith("waiting for the maintenance window")


def test_manual_rollback_of_a_finished_rollout(sim):
    fleet, cluster = sim(node_group("n-{i}", count=3, kubelet_flags=ISOLATED_16))
    rollout = drive(create(cluster))
    assert rollout.status == "succeeded"
    transitions.rollout_rollback(actor="user:test", rollout=rollout)
    rollout = drive(rollout)
    assert rollout.status == "rolled-back", rollout.reason
    assert all(observed(fleet, n).observed_pid_namespace == "isolated" for n in ("n-01", "n-02", "n-03"))


def test_rollback_that_flags_cannot_do_reports_the_downgrade(sim):
    fleet, cluster = sim(node_group("up", kubelet_flags=ISOLATED_16), node_group("ok", kubelet_flags=ISOLATED_16))
    rollout = drive(create(cluster, canary_count=0))
    assert rollout.status == "succeeded"
    # The kubelet was upgraded to 1.7 since: the CRI can no longer be disabled.
    node = fleet.node("sim", "up")
    (node.kubelet_dir / "kubelet-version").write_text("v1.7.3\n")
    transitions.rollout_rollback(actor="user:test", rollout=rollout)
    rollout = drive(rollout)
    assert rollout.status == "failed"
    assert "up needs manual action" in rollout.reason and "downgrade" in rollout.reason
    op = rollout.operations.get(phase="rollback", node__name="up")
    assert (op.state, op.error_code) == ("needs-manual", "downgrade")
    assert rollout.operations.get(phase="rollback", node__name="ok").state == "succeeded"


def test_second_rollout_on_busy_nodes_is_refused_or_waits(sim):
    _, cluster = sim(node_group("n-{i}", count=2, kubelet_flags=ISOLATED_16))
    first = create(cluster, start=False)
    with pytest.raises(RolloutConflict) as excinfo:
        create(cluster, start=False)
    assert f"node n-01 is in unfinished rollout {first.pk}" in str(excinfo.value.errors)
    second = transitions.rollout_create(
        actor="user:test",
        name="w",
        cluster=cluster,
        intent="shared",
        strategy=Strategy(canary_count=0, max_unavailable=2),
        busy_policy="wait",
    )
    transitions.rollout_start(actor="user:test", rollout=first)
    transitions.rollout_start(actor="user:test", rollout=second)
    first_ops = advancer.rollout_advance(rollout_id=first.pk).dispatched
    assert len(first_ops) == 1  # the canary
    # The second rollout cannot take n-01 while the first holds it.
    second_ops = advancer.rollout_advance(rollout_id=second.pk).dispatched
    assert [NodeOperation.objects.get(pk=i).node.name for i in second_ops] == ["n-02"]


def test_claim_is_exclusive(sim):
    _, cluster = sim(node_group("a", kubelet_flags=ISOLATED_16))
    rollout = create(cluster)
    [op_id] = advancer.rollout_advance(rollout_id=rollout.pk).dispatched
    winners = []
    barrier = threading.Barrier(4)

    def claim(worker):
        from django.db import connection

        barrier.wait()
        if operations.operation_claim(operation_id=op_id, worker=worker):
            winners.append(worker)
        connection.close()

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1


def test_a_node_has_one_active_operation_across_rollouts(sim):
    from django.db import IntegrityError

    _, cluster = sim(node_group("a", kubelet_flags=ISOLATED_16))
    node = Node.objects.get(name="a")
    r1 = create(cluster, start=False)
    r2 = transitions.rollout_create(
        actor="t", name="two", cluster=cluster, intent="shared", strategy=Strategy(), busy_policy="wait"
    )
    NodeOperation.objects.filter(rollout=r1, node=node).update(state="running")
    with pytest.raises(IntegrityError):
        NodeOperation.objects.filter(rollout=r2, node=node).update(state="running")


def test_lost_worker_operation_is_recovered(sim, settings):
    from datetime import timedelta

    from django.utils import timezone

    _, cluster = sim(node_group("a", kubelet_flags=ISOLATED_16))
    rollout = create(cluster)
    [op_id] = advancer.rollout_advance(rollout_id=rollout.pk).dispatched
    operations.operation_claim(operation_id=op_id, worker="dead-worker")
    NodeOperation.objects.filter(pk=op_id).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert recovery.operations_recover() == [op_id]
    op = NodeOperation.objects.get(pk=op_id)
    assert (op.state, op.lease_owner, op.step) == ("running", "", "apply")
    assert "dead-worker stopped during apply" in op.error
    rollout = drive(rollout)
    assert rollout.status == "succeeded"
    assert rollout.operations.get(pk=op_id).attempts == 2


def test_retry_after_an_apply_that_landed_counts_as_succeeded(sim):
    fleet, cluster = sim(node_group("a", kubelet_flags=ISOLATED_16))
    rollout = create(cluster)
    [op_id] = advancer.rollout_advance(rollout_id=rollout.pk).dispatched
    op = operations.operation_claim(operation_id=op_id, worker="dying-worker")
    # The worker passed the write gate (recording what it saw), applied, and died before verifying.
    NodeOperation.objects.filter(pk=op_id).update(
        before_flags=ISOLATED_16, before_mode="isolated", target_flags={"enable-cri": "true"}, changed=True
    )
    DockerEngineDriver().apply(endpoint_for(op.node), {"enable-cri": "true"})
    from datetime import timedelta

    from django.utils import timezone

    NodeOperation.objects.filter(pk=op_id).update(lease_until=timezone.now() - timedelta(seconds=1))
    recovery.operations_recover()
    rollout = drive(rollout)
    op = rollout.operations.get(pk=op_id)
    assert (op.state, op.before_flags, op.attempts) == ("succeeded", ISOLATED_16, 2)
    assert rollout.reason == "1 nodes changed, 0 skipped, 0 failed"


def test_a_worker_whose_lease_was_taken_over_writes_nothing(sim, settings):
    from datetime import timedelta

    from django.utils import timezone

    _, cluster = sim(node_group("a", kubelet_flags=ISOLATED_16))
    rollout = create(cluster)
    [op_id] = advancer.rollout_advance(rollout_id=rollout.pk).dispatched
    slow = operations.operation_claim(operation_id=op_id, worker="slow-worker")
    # The slow worker's lease runs out on its last attempt: the reconciler fails the operation.
    NodeOperation.objects.filter(pk=op_id).update(
        lease_until=timezone.now() - timedelta(seconds=1), attempts=settings.PIDNS_OPERATION_MAX_ATTEMPTS
    )
    recovery.operations_recover()
    op = NodeOperation.objects.get(pk=op_id)
    assert (op.state, op.error_code) == ("failed", "worker-lost")
    # The slow worker now finishes its step and tries to record a success: nothing is written.
    assert operations._save(slow, "slow-worker", "apply", operations._Step(action="succeed")) is None
    op.refresh_from_db()
    assert (op.state, op.error_code) == ("failed", "worker-lost")


def test_abort_takes_effect_at_once_and_nothing_writes_after_it(sim):
    fleet, cluster = sim(node_group("n-{i}", count=4, kubelet_flags=ISOLATED_16))
    rollout = create(cluster, canary_count=0, batch_size=4, max_unavailable=2)
    first, second = advancer.rollout_advance(rollout_id=rollout.pk).dispatched
    # A worker holds the first operation (it is reading the node) when the operator aborts.
    held = operations.operation_claim(operation_id=first, worker="busy-worker")
    transitions.rollout_abort(actor="user:test", rollout=rollout)
    states_now = dict(rollout.operations.values_list("id", "state"))
    assert states_now[second] == "cancelled" and states_now[first] == "running"
    assert set(states_now.values()) == {"cancelled", "running"}
    # Nothing is dispatched after the abort, by a pass or by a hand-over.
    assert advancer.rollout_advance(rollout_id=rollout.pk).dispatched == []
    # The held operation reaches its write gate, sees the abort, and writes nothing.
    outcome = operations.operation_run_claimed(held, worker="busy-worker")
    assert outcome.finished and outcome.handover.dispatched == []
    held.refresh_from_db()
    assert held.state == "cancelled" and not held.changed
    # A retry of it (a second delivery) finds nothing to do.
    assert operations.operation_step(operation_id=first, worker="another-worker") is None
    for node in fleet.nodes:
        assert node.flags() == ISOLATED_16 and node.restarts == 0


def test_an_operation_that_wrote_before_the_abort_finishes_and_records_the_node(sim):
    fleet, cluster = sim(node_group("a", kubelet_flags=ISOLATED_16))
    rollout = create(cluster)
    [op_id] = advancer.rollout_advance(rollout_id=rollout.pk).dispatched
    operations.operation_step(operation_id=op_id, worker="w")  # apply: through the gate, written
    assert NodeOperation.objects.get(pk=op_id).step == "verify"
    transitions.rollout_abort(actor="user:test", rollout=rollout)
    op = run_operation(op_id)
    assert op.state == "succeeded"
    node = Node.objects.get(name="a")
    assert node.desired_flags == node.kubelet_flags == {"enable-cri": "true"}
    assert node.observed_pid_namespace == "shared" and node.observed_via == "verify"


def test_the_inventory_is_right_when_a_rollout_ends_and_the_next_audit_finds_no_drift(sim):
    fleet, cluster = sim(node_group("n-{i}", count=3, kubelet_flags=ISOLATED_16))
    rollout = drive(create(cluster, max_unavailable=3))
    assert rollout.status == "succeeded"
    for node in Node.objects.filter(cluster=cluster):
        assert node.kubelet_flags == node.desired_flags == {"enable-cri": "true"}
        assert (node.observed_pid_namespace, node.pid_namespace, node.drift) == ("shared", "shared", False)
    out = io.StringIO()
    call_command("audit", quiet=True, stdout=out)
    assert "3 nodes read, 0 failed, 0 drifted" in out.getvalue()
    # The preview plans from what the rollout did: nothing left to do.
    again = selectors.rollout_preview(
        cluster=cluster, selector={}, change=Change(PID, intent="shared"), strategy=Strategy()
    )
    assert again["targets"] == [] and {s["code"] for s in again["skipped"]} == {"already-shared"}
    rollback = drive(transitions.rollout_rollback(actor="user:test", rollout=rollout))
    assert rollback.status == "rolled-back"
    for node in Node.objects.filter(cluster=cluster):
        assert node.kubelet_flags == node.desired_flags == ISOLATED_16
        assert (node.observed_pid_namespace, node.drift) == ("isolated", False)
    out = io.StringIO()
    call_command("audit", quiet=True, stdout=out)
    assert "3 nodes read, 0 failed, 0 drifted" in out.getvalue()


def test_a_node_changed_since_it_was_read_is_read_again_before_writing(sim):
    fleet, cluster = sim(node_group("a", kubelet_flags=ISOLATED_16))
    rollout = create(cluster)
    # After the audit, someone adds a flag by hand: the inventory's reading is stale.
    by_hand = {**ISOLATED_16, "experimental-cri": "false"}
    (fleet.node("sim", "a").kubelet_dir / "20-pidns.conf").write_text(render_dropin(by_hand))
    rollout = drive(rollout)
    op = rollout.operations.get()
    assert op.state == "succeeded" and op.attempts == 2
    # The write found the node changed, read it again and decided from what it has.
    assert op.before_flags == by_hand
    assert fleet.node("sim", "a").flags() == op.target_flags == {"enable-cri": "true", "experimental-cri": "false"}
    assert NodeObservation.objects.filter(node__name="a", source="preflight").exists()


def test_a_slow_kubelet_is_learned_from_the_clusters_last_rollout(sim):
    """The first look at a node comes when the cluster's recent nodes were first seen ready (the
    canary's, here), not after a series of short looks: the cost of waiting does not grow with
    the kubelet's restart time."""
    fleet, cluster = sim(node_group("slow-{i}", count=2, kubelet_flags=ISOLATED_16, faults={"restart_ms": 1500}))
    canary = drive(create(cluster, selector={"nodes": ["slow-01"]}))
    assert canary.status == "succeeded", canary.reason
    first = canary.operations.get()
    assert first.verify_state["looks"] >= 3  # nothing to learn from yet: short looks, backing off
    assert first.verify_state["ready_after"] >= 1.5
    operations.restart_clock._priors.clear()  # as in another worker process
    second = create(cluster, selector={"nodes": ["slow-02"]})
    advancer.rollout_advance(rollout_id=second.pk)
    op = second.operations.get()
    outcome = operations.operation_step(operation_id=op.pk, worker="test-worker")  # the apply step
    assert outcome.operation.step == "verify"
    assert outcome.wake_in == pytest.approx(first.verify_state["ready_after"], rel=0.01)
    done = drive(second)
    assert done.status == "succeeded", done.reason
    assert done.operations.get().verify_state.get("looks", 0) <= 1


def test_a_step_longer_than_the_lease_keeps_it_while_it_runs(sim, settings):
    """Leases are short so that a dead worker's step is taken over soon; a live worker whose step
    waits on a slow engine renews its lease, and no other worker takes the operation meanwhile."""
    import time

    from django.db import connection

    # A lease of a few seconds, renewed every third of it: a loaded machine's pauses stay well inside.
    settings.PIDNS_OPERATION_LEASE_SECONDS = 3
    fleet, cluster = sim(node_group("n-{i}", count=1, kubelet_flags=ISOLATED_16))
    rollout = create(cluster)
    advancer.rollout_advance(rollout_id=rollout.pk)
    op = rollout.operations.get()

    class SlowEngine(DockerEngineDriver):
        def apply(self, *args, **kwargs):
            time.sleep(7)  # an engine much slower than the lease, within its own timeout
            return super().apply(*args, **kwargs)

    taken = []

    def another_worker():
        try:
            deadline = time.monotonic() + 6.9
            while time.monotonic() < deadline and not taken:
                if operations.operation_claim(operation_id=op.pk, worker="other") is not None:
                    taken.append(time.monotonic())
                time.sleep(0.1)
        finally:
            connection.close()

    thread = threading.Thread(target=another_worker)
    thread.start()
    outcome = operations.operation_step(operation_id=op.pk, worker="slow", driver=SlowEngine())
    thread.join()
    assert not taken, "another worker took an operation whose step was still running"
    assert outcome is not None and outcome.operation.step == "verify"
    assert operations.lease_keeper.held() == []
