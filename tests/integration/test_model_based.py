"""A model-based test of the whole loop: rollouts, operator actions, audits, imports, lost workers and
changes made behind the service's back, in random orders over a simulated fleet, then settled.

After every step: at most one running operation per node; no operation passed its write gate after
its rollout was aborted; every finished operation and every operator action has its event. After
settling and auditing: each node's observed facts equal the simulated node's truth, and a node is in
drift exactly when the test changed it behind the service's back.
"""

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db.models import Count
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from core.models import AuditEvent
from drivers.dropin import render_dropin
from drivers.observe import node_mode
from nodes import importing
from nodes.management.commands.simfleet import register
from nodes.models import Cluster, Node
from rollout import advancer, operations, recovery, transitions
from rollout.errors import RolloutConflict
from rollout.models import NodeOperation, Rollout
from rollout.strategy import Strategy
from simfleet.fleet import FleetThread
from tests.conftest import fleet_spec, node_group

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ISOLATED = {"enable-cri": "false"}
SHARED = {"enable-cri": "true"}
NAMES = ["n-01", "n-02", "n-03", "m-01", "m-02", "m-03"]


def toggled(flags: dict) -> dict:
    return SHARED if flags == ISOLATED else ISOLATED


class Fleet(RuleBasedStateMachine):
    """The service and a simulated fleet of six kubelet 1.6 nodes (half isolated, half shared)."""

    def __init__(self):
        super().__init__()
        self.thread = None
        self.rollouts: list[int] = []
        self.aborted_at: dict[int, object] = {}
        self.tampered: dict[str, object] = {}  # node name -> when it was changed behind our back
        self.actions_done = 0

    @initialize()
    def start(self):
        for model in (NodeOperation, Rollout, Node, Cluster, AuditEvent):
            model.objects.all().delete()
        spec = fleet_spec(
            node_group("n-{i}", count=3, kubelet_flags=ISOLATED),
            node_group("m-{i}", count=3),
        )
        self.thread = FleetThread(spec, engine="fake", sync_interval=0.05).start()
        fleet = self.thread.fleet
        register(fleet)
        # The operator states each node's intended flags: what it has.
        importing.nodes_import(
            actor="test",
            nodes=[{"cluster": "sim", "name": n.spec.name, "desired_flags": n.flags()} for n in fleet.nodes],
        )
        call_command("audit", quiet=True, stdout=io.StringIO())

    def teardown(self):
        if self.thread is not None:
            self.thread.stop()
            from nodes.access import default_driver

            default_driver().close()

    # --- helpers -------------------------------------------------------------------------------------

    def sim(self, name):
        return self.thread.fleet.node("sim", name)

    def busy_nodes(self) -> set[str]:
        unfinished = Rollout.objects.exclude(status__in=["succeeded", "failed", "aborted", "rolled-back"])
        return set(
            NodeOperation.objects.filter(rollout__in=unfinished, state__in=["pending", "running"]).values_list(
                "node__name", flat=True
            )
        )

    def advance(self) -> None:
        """Full passes of the advancer over the active rollouts (operations get their slots)."""
        for rollout_id in Rollout.objects.filter(status__in=["running", "rolling-back"]).values_list("id", flat=True):
            advancer.rollout_advance(rollout_id=rollout_id)

    def run_due(self, rounds: int = 1) -> None:
        """What workers do: full passes, and every due step once per round."""
        import time

        for _ in range(rounds):
            recovery.operations_recover()  # what beat runs every few seconds
            self.advance()
            due = NodeOperation.objects.filter(state="running", lease_owner="", wake_at__lte=timezone.now())
            for op_id in due.values_list("id", flat=True):
                operations.operation_step(operation_id=op_id, worker="model-worker")
            time.sleep(0.02)

    def act(self, rollout_id: int, action: str) -> None:
        rollout = Rollout.objects.get(pk=rollout_id)
        # What the rollout offers: the table's actions for its status, less a rollback when it
        # changed no node.
        allowed = action in transitions.rollout_actions(rollout)
        try:
            transitions.ACTIONS[action](actor="user:model", rollout=rollout)
        except RolloutConflict:
            assert not allowed, f"{action} from {rollout.status} is offered but was refused"
            return
        assert allowed, f"{action} from {rollout.status} is not offered but was done"
        self.actions_done += 1
        if action == "abort":
            self.aborted_at[rollout_id] = (
                AuditEvent.objects.filter(verb="abort", object_type="rollout", object_id=str(rollout_id))
                .latest("id")
                .created_at
            )

    # --- rules ---------------------------------------------------------------------------------------

    @rule(
        intent=st.sampled_from(["shared", "isolated"]),
        names=st.sets(st.sampled_from(NAMES), min_size=1, max_size=6),
        width=st.integers(1, 3),
        canary=st.integers(0, 1),
        approval=st.booleans(),
        start=st.booleans(),
    )
    def create(self, intent, names, width, canary, approval, start):
        names = sorted(set(names) - set(self.tampered))
        if not names:
            return
        try:
            rollout = transitions.rollout_create(
                actor="user:model",
                name="model",
                cluster=Cluster.objects.get(name="sim"),
                intent=intent,
                selector={"nodes": names},
                strategy=Strategy(
                    canary_count=canary, batch_size=2, max_unavailable=width, pause_after_canary=approval
                ),
            )
        except RolloutConflict:
            assert set(names) & self.busy_nodes()
            return
        self.rollouts.append(rollout.pk)
        if start:
            self.act(rollout.pk, "start")

    @precondition(lambda self: self.rollouts)
    @rule(data=st.data(), action=st.sampled_from(list(transitions.ACTIONS)))
    def operator(self, data, action):
        self.act(data.draw(st.sampled_from(self.rollouts)), action)

    @rule(rounds=st.integers(1, 6))
    def work(self, rounds):
        self.run_due(rounds)

    @rule()
    def dispatch_only(self):
        """The advancer hands out slots; no worker has picked the operations up yet."""
        self.advance()

    @rule()
    def audit(self):
        call_command("audit", quiet=True, stdout=io.StringIO())

    @rule()
    def reimport(self):
        """An inventory import that restates the nodes' labels and endpoints (no intent changes)."""
        register(self.thread.fleet)

    @rule(data=st.data())
    def lose_a_worker(self, data):
        """A worker takes an operation's lease and dies mid-step."""
        running = list(NodeOperation.objects.filter(state="running", lease_owner="").values_list("id", flat=True))
        if not running:
            return
        op_id = data.draw(st.sampled_from(running))
        if operations.operation_claim(operation_id=op_id, worker="dying-worker"):
            NodeOperation.objects.filter(pk=op_id).update(lease_until=timezone.now() - timedelta(seconds=1))

    @rule(data=st.data(), action=st.sampled_from(["abort", "rollback", "pause"]))
    def act_while_a_worker_is_mid_step(self, data, action):
        """An operator acts while a worker is in the middle of an operation's step; then the worker
        goes on with it."""
        self.advance()
        running = list(
            NodeOperation.objects.filter(state="running", lease_owner="", wake_at__lte=timezone.now()).values_list(
                "id", flat=True
            )
        )
        if not running:
            return
        held = operations.operation_claim(operation_id=data.draw(st.sampled_from(running)), worker="busy-worker")
        if held is None:
            return
        self.act(held.rollout_id, action)
        operations.operation_run_claimed(held, worker="busy-worker")

    @rule(data=st.data())
    def behind_the_back(self, data):
        """Someone edits an idle node's managed flags by hand and restarts its kubelet."""
        idle = sorted(set(NAMES) - self.busy_nodes() - set(self.tampered))
        if not idle:
            return
        name = data.draw(st.sampled_from(idle))
        node = self.sim(name)
        flags = toggled(node.flags())
        self.thread.run(lambda: (node.kubelet_dir / "20-pidns.conf").write_text(render_dropin(flags)))
        self.thread.run(lambda: (node.kubelet_dir / "restart-requested").write_text(f"{timezone.now()}\n"))
        self.thread.run(node.kubelet_sync)
        self.tampered[name] = timezone.now()

    @rule()
    def settle_and_audit(self):
        """Let everything finish, audit, and compare with the truth."""
        for rollout in Rollout.objects.filter(status__in=["draft", "paused", "awaiting-approval"]):
            self.act(rollout.pk, "abort")
        for _ in range(600):
            recovery.operations_recover()
            self.run_due()
            if (
                not NodeOperation.objects.filter(state__in=["running"]).exists()
                and not Rollout.objects.filter(status__in=["running", "rolling-back"]).exists()
            ):
                break
        else:
            raise AssertionError("the rollouts did not settle")
        out = io.StringIO()
        call_command("audit", quiet=True, stdout=out)
        assert "0 failed" in out.getvalue(), out.getvalue()
        nodes = {n.name: n for n in Node.objects.all()}
        for name in NAMES:
            sim, node = self.sim(name), nodes[name]
            pods = node_mode(self.thread.run(lambda sim=sim: list(_pods(sim))))
            assert node.kubelet_flags == sim.flags(), name
            assert node.observed_pid_namespace == pods, name
        drifted = {name for name, node in nodes.items() if node.drift}
        # Changed behind the service's back, and not written by the service since (a rollback can).
        rewritten = {
            name
            for name, at in self.tampered.items()
            if NodeOperation.objects.filter(node__name=name, written_at__gt=at).exists()
        }
        assert drifted == set(self.tampered) - rewritten, (drifted, self.tampered, rewritten)
        # Put the tampered nodes back as the service wants them, so later steps start clean.
        for name in self.tampered:
            node, sim = nodes[name], self.sim(name)
            self.thread.run(
                lambda sim=sim, node=node: (sim.kubelet_dir / "20-pidns.conf").write_text(
                    render_dropin(node.desired_flags)
                )
            )
            self.thread.run(lambda sim=sim: (sim.kubelet_dir / "restart-requested").write_text(f"{timezone.now()}\n"))
            self.thread.run(sim.kubelet_sync)
        self.tampered.clear()
        call_command("audit", quiet=True, stdout=io.StringIO())
        assert not Node.objects.filter(drift=True).exists()

    # --- invariants ----------------------------------------------------------------------------------

    @invariant()
    def one_running_operation_per_node(self):
        busiest = NodeOperation.objects.filter(state="running").values("node").annotate(n=Count("id")).order_by("-n")
        assert not busiest or busiest[0]["n"] == 1

    @invariant()
    def nothing_written_after_an_abort(self):
        for rollout_id, at in self.aborted_at.items():
            late = NodeOperation.objects.filter(rollout_id=rollout_id, phase="forward", written_at__gt=at)
            assert not late.exists(), list(late.values("id", "written_at", "state"))

    @invariant()
    def kept_counts_match_the_nodes(self):
        assert_counts_match_nodes()

    @invariant()
    def every_change_has_its_event(self):
        finished = NodeOperation.objects.filter(
            state__in=["succeeded", "failed", "needs-manual"], dispatched_at__isnull=False
        ).count()
        events = AuditEvent.objects.filter(
            verb__in=["operation-succeeded", "operation-failed", "operation-needs-manual"]
        )
        assert events.count() >= finished
        actions = AuditEvent.objects.filter(actor="user:model", verb__in=list(transitions.ACTIONS)).count()
        assert actions == self.actions_done


def assert_counts_match_nodes() -> None:
    """The counts the database keeps (the overview's source) equal a GROUP BY over the nodes."""
    from nodes.models import COUNTED_COLUMNS
    from nodes.selectors import node_counts

    truth = {
        tuple(row[c] for c in COUNTED_COLUMNS): row["n"]
        for row in Node.objects.order_by().values(*COUNTED_COLUMNS).annotate(n=Count("id"))
    }
    kept = {tuple(row[c] for c in COUNTED_COLUMNS): row["n"] for row in node_counts()}
    assert kept == truth


def _pods(sim):
    from drivers.observe import observe_pods

    return observe_pods(
        [
            c.inspect()
            for c in sim.backend.containers.values()
            if "io.kubernetes.docker.type" in (c.config.get("Labels") or {})
        ]
    )


Fleet.TestCase.settings = settings(
    max_examples=15,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=True,
)


def test_the_loop_keeps_its_invariants(transactional_db):
    Fleet.TestCase().runTest()
