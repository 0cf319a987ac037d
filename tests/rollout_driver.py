"""Run rollouts in the test process: the advancer and node operations called directly, with a
thread pool standing in for workers. Used where a test is about the state machine, not Celery."""

import time
from concurrent.futures import ThreadPoolExecutor

from django.db import connection

from rollout import services
from rollout.models import ROLLOUT_FINAL_STATES, Rollout, RolloutStatus


def drive(rollout: Rollout, *, max_rounds: int = 500, stop_on=()) -> Rollout:
    """Advance and execute until the rollout ends, waits for approval, or hits ``stop_on``."""

    def run(op_id):
        try:
            return services.operation_execute(operation_id=op_id, worker="test-worker")
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(max_rounds):
            rollout.refresh_from_db()
            if rollout.status in ROLLOUT_FINAL_STATES or rollout.status in stop_on:
                return rollout
            if rollout.status in (RolloutStatus.AWAITING_APPROVAL, RolloutStatus.PAUSED):
                return rollout
            result = services.rollout_advance(rollout_id=rollout.pk)
            # Like workers: run every dispatched operation, including ones sent back for a retry.
            dispatched = list(rollout.operations.filter(state="dispatched").values_list("id", flat=True))
            list(pool.map(run, dispatched))
            if not dispatched and result.recheck_in is not None:
                time.sleep(min(result.recheck_in, 0.5))
    raise AssertionError(f"rollout {rollout.pk} did not finish: {rollout.status}")
