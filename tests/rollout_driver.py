"""Run rollouts in the test process: the advancer and the operations' steps called directly, with a
thread pool standing in for workers. Used where a test is about the state machines, not Celery."""

import time
from concurrent.futures import ThreadPoolExecutor

from django.db import connection
from django.utils import timezone

from rollout import advancer, operations
from rollout.models import ROLLOUT_FINAL_STATES, NodeOperation, Rollout, RolloutStatus


def due_operations(rollout: Rollout) -> list[int]:
    """Running operations of the rollout whose step is due and that no worker holds."""
    return list(
        NodeOperation.objects.filter(
            rollout=rollout, state="running", lease_owner="", wake_at__lte=timezone.now()
        ).values_list("id", flat=True)
    )


def step(op_id: int, worker: str = "test-worker"):
    try:
        return operations.operation_step(operation_id=op_id, worker=worker)
    finally:
        connection.close()


def run_operation(op_id: int, worker: str = "test-worker", timeout: float = 30):
    """Run one operation's steps until it finishes (waiting while it waits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outcome = operations.operation_step(operation_id=op_id, worker=worker)
        op = NodeOperation.objects.get(pk=op_id)
        if op.state != "running":
            return op
        time.sleep(min(0.05, outcome.wake_in if outcome and outcome.wake_in else 0.01))
    raise AssertionError(f"operation {op_id} did not finish")


def drive(rollout: Rollout, *, max_seconds: float = 60, stop_on=()) -> Rollout:
    """Advance and run due steps until the rollout ends, waits for approval, is paused, or hits
    ``stop_on``."""
    deadline = time.monotonic() + max_seconds
    with ThreadPoolExecutor(max_workers=8) as pool:
        while time.monotonic() < deadline:
            rollout.refresh_from_db()
            if rollout.status in ROLLOUT_FINAL_STATES or rollout.status in stop_on:
                return rollout
            waiting = rollout.status in (RolloutStatus.AWAITING_APPROVAL, RolloutStatus.PAUSED)
            if waiting and not NodeOperation.objects.filter(rollout=rollout, state="running").exists():
                return rollout
            result = advancer.rollout_advance(rollout_id=rollout.pk)
            due = due_operations(rollout)
            list(pool.map(step, due))
            if not due:
                time.sleep(min(result.recheck_in or 0.02, 0.2))
    raise AssertionError(f"rollout {rollout.pk} did not finish: {rollout.status}")
