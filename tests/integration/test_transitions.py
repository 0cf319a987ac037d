"""Every (state, action) pair of the state machines, applied through the services: what the table
allows happens (one conditional update), the rest is refused and changes nothing."""

import threading

import pytest
from django.db import connection

from core.models import AuditEvent
from nodes import audits
from nodes.models import Audit, AuditStatus
from nodes.states import AUDIT
from rollout import transitions
from rollout.errors import RolloutConflict
from rollout.models import NodeOperation, Rollout
from rollout.states import OPERATION, OPERATION_STATES, ROLLOUT, ROLLOUT_STATES
from rollout.strategy import Strategy

pytestmark = pytest.mark.django_db


@pytest.fixture
def rollout(make_cluster, make_node):
    cluster = make_cluster("walk")
    make_node(cluster, "n1", flags={"enable-cri": "false"}, docker_endpoint="tcp://127.0.0.1:9")
    return transitions.rollout_create(
        actor="test", name="walk", cluster=cluster, intent="shared", strategy=Strategy(canary_count=0)
    )


@pytest.mark.parametrize("status", ROLLOUT_STATES)
@pytest.mark.parametrize("action", list(transitions.ACTIONS))
def test_every_operator_action_from_every_status(rollout, status, action, admin):
    Rollout.objects.filter(pk=rollout.pk).update(status=status)
    rollout.operations.update(changed=True)  # it wrote to its node: a rollback has something to undo
    rollout.refresh_from_db()
    events = AuditEvent.objects.count()
    if ROLLOUT.allowed(status, action):
        result = transitions.ACTIONS[action](actor="user:test", rollout=rollout)
        assert result.status == ROLLOUT[action].target
        assert AuditEvent.objects.filter(verb=action, object_id=str(rollout.pk)).exists()
    else:
        with pytest.raises(RolloutConflict, match=f"cannot {action} a rollout that is {status}"):
            transitions.ACTIONS[action](actor="user:test", rollout=rollout)
        rollout.refresh_from_db()
        assert rollout.status == status and AuditEvent.objects.count() == events
    # The API offers exactly what the table allows.
    answer = admin.get(f"/api/v1/rollouts/{rollout.pk}/").json()
    assert answer["actions"] == ROLLOUT.actions_from(answer["status"])


@pytest.mark.parametrize("status", [s for s in ROLLOUT_STATES if ROLLOUT.allowed(s, "rollback")])
def test_a_rollout_that_changed_no_node_offers_no_rollback_and_refuses_one(rollout, status, admin):
    """An abort before any write (or a rollout that skipped every node) leaves nothing to undo:
    no Rollback is offered, and asking anyway is a 409 that says so, with nothing written."""
    Rollout.objects.filter(pk=rollout.pk).update(status=status)
    rollout.refresh_from_db()
    events = AuditEvent.objects.count()
    answer = admin.get(f"/api/v1/rollouts/{rollout.pk}/").json()
    assert "rollback" not in answer["actions"]
    assert answer["actions"] == [a for a in ROLLOUT.actions_from(status) if a != "rollback"]
    listed = next(r for r in admin.get("/api/v1/rollouts/").json()["results"] if r["id"] == rollout.pk)
    assert listed["actions"] == answer["actions"]
    refused = admin.post(f"/api/v1/rollouts/{rollout.pk}/rollback/")
    assert refused.status_code == 409
    assert refused.json() == {"status": ["nothing to roll back: this rollout changed no node (abort stops it)"]}
    rollout.refresh_from_db()
    assert rollout.status == status and AuditEvent.objects.count() == events
    assert not rollout.operations.filter(phase="rollback").exists()


@pytest.mark.django_db(transaction=True)
def test_racing_the_same_transition_only_one_wins(rollout):
    winners, losers = [], []
    barrier = threading.Barrier(4)

    def start():
        barrier.wait()
        try:
            transitions.rollout_start(actor="user:racer", rollout=Rollout.objects.get(pk=rollout.pk))
            winners.append(1)
        except RolloutConflict:
            losers.append(1)
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (len(winners), len(losers)) == (1, 3)


@pytest.mark.parametrize("state", OPERATION_STATES)
@pytest.mark.parametrize("action", list(OPERATION.transitions))
def test_every_operation_transition_from_every_state(rollout, state, action):
    op = NodeOperation.objects.get(rollout=rollout)
    NodeOperation.objects.filter(pk=op.pk).update(state=state)
    moved = OPERATION.apply(NodeOperation.objects.filter(pk=op.pk), action)
    op.refresh_from_db()
    if OPERATION.allowed(state, action):
        assert moved == 1 and op.state == OPERATION[action].target
    else:
        assert moved == 0 and op.state == state


@pytest.mark.parametrize("status", AuditStatus.values)
@pytest.mark.parametrize("action", list(AUDIT.transitions))
def test_every_audit_transition_from_every_status(status, action):
    audit = Audit.objects.create(requested_by="test", status=status)
    moved = AUDIT.apply(Audit.objects.filter(pk=audit.pk), action)
    audit.refresh_from_db()
    assert (moved == 1) == AUDIT.allowed(status, action)
    assert audit.status == (AUDIT[action].target if moved else status)


def test_a_finished_audit_is_not_failed_by_a_late_worker():
    audit = Audit.objects.create(requested_by="test", status="succeeded")
    audits._fail(audit, "a late worker's error")
    audit.refresh_from_db()
    assert audit.status == "succeeded" and not AuditEvent.objects.filter(verb="fail").exists()
