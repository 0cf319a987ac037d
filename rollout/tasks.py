"""Celery tasks for rollouts. Thin: ids in, a service call, then what comes next is sent.

An operation's step runs as one task; when the step waits (a kubelet restarting), the task ends and
the operation is sent again when it is due, so waiting holds no worker. A finished operation hands
its slot to the next one in the same transaction; the full pass of the advancer runs only when a
wave ends or the rollout changes state. Messages are sent after commit, and a broker that is down
then costs nothing but a delay: the reconciler finds the work again within seconds.
"""

from __future__ import annotations

import logging
import os
import socket
import time

from celery import shared_task
from django.db import transaction

from . import advancer, draining, operations, recovery

log = logging.getLogger(__name__)
# Longest delay sent with a message; longer waits come back through the reconciler.
MAX_COUNTDOWN = 30.0


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def send(task, *args, countdown: float | None = None) -> None:
    """Send a task once the current transaction commits. A broker failure is logged, not raised: the
    database holds the work, and the reconciler sends it again."""

    def publish():
        try:
            if countdown:
                task.apply_async(args, countdown=min(MAX_COUNTDOWN, countdown))
            else:
                task.apply_async(args)
        except Exception as exc:  # the broker is down: the reconciler will find the work
            log.warning("could not send %s%s: %s", task.name, args, exc)

    transaction.on_commit(publish)


def rollout_kick(rollout_id: int) -> None:
    """Run the advancer's full pass once the current transaction commits."""
    send(rollout_advance, rollout_id)


def _advance(rollout_id: int) -> int:
    result = advancer.rollout_advance(rollout_id=rollout_id)
    for operation_id in result.dispatched:
        send(operation_step, operation_id)
    if result.recheck_in is not None:
        send(rollout_advance, rollout_id, countdown=max(0.5, result.recheck_in))
    return len(result.dispatched)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def rollout_advance(rollout_id: int) -> int:
    """The full pass: start waves, soak, wait for approval or the window, finish the rollout."""
    return _advance(rollout_id)


def _step_later(operation_id: int, wake_in: float) -> None:
    """Send the operation's next step ``wake_in`` seconds from now. A wait longer than a message's
    countdown may be (``MAX_COUNTDOWN``) travels in hops: the message carries the time it is due,
    and one that arrives early sends itself on without touching the database."""
    if wake_in > MAX_COUNTDOWN:
        send(operation_step, operation_id, time.time() + wake_in, countdown=MAX_COUNTDOWN)
    else:
        send(operation_step, operation_id, countdown=wake_in)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def operation_step(operation_id: int, due_at: float | None = None) -> str:
    """Run the due step of one operation; a second delivery finds it not due, or leased, and does
    nothing."""
    remaining = 0.0 if due_at is None else due_at - time.time()
    if remaining > 0:
        _step_later(operation_id, remaining)
        return "on its way"
    outcome = operations.operation_step(operation_id=operation_id, worker=_worker_name())
    if outcome is None:
        return "not due"
    if not outcome.finished:
        _step_later(operation_id, outcome.wake_in)
        return f"{outcome.operation.step} in {outcome.wake_in:.2f}s"
    for next_id in outcome.handover.dispatched:
        send(operation_step, next_id)
    if outcome.handover.needs_advance:
        _advance(outcome.operation.rollout_id)
    return outcome.operation.state


@shared_task
def rollouts_reconcile() -> str:
    """Beat: send again operations whose worker died or whose message was lost; give every active
    rollout a full pass (soak ends, windows open, busy nodes free up)."""
    resent = recovery.operations_recover()
    for operation_id in resent:
        send(operation_step, operation_id)
    active = recovery.rollouts_active()
    for rollout_id in active:
        send(rollout_advance, rollout_id)
    uncordoned = draining.uncordon_orphans()
    return f"resent {len(resent)} operations, advanced {len(active)} rollouts, uncordoned {uncordoned} nodes"
