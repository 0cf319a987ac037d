"""Celery tasks for rollouts. Thin: ids in, a service call, then what comes next is enqueued.

An operation that finishes runs the advancer at once, in the same worker, so the next operation
starts as soon as a slot frees; the periodic reconciler only catches what a crash or a lost
message left.
"""

from __future__ import annotations

import os
import socket

from celery import shared_task
from django.db import transaction

from . import services


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def rollout_kick(rollout_id: int) -> None:
    """Run the advancer once the current transaction commits."""
    transaction.on_commit(lambda: rollout_advance.delay(rollout_id))


def _advance(rollout_id: int) -> int:
    result = services.rollout_advance(rollout_id=rollout_id)
    for operation_id in result.dispatched:
        operation_run.delay(operation_id)
    if result.recheck_in is not None:
        rollout_advance.apply_async((rollout_id,), countdown=min(30.0, max(0.5, result.recheck_in)))
    return len(result.dispatched)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def rollout_advance(rollout_id: int) -> int:
    """Hand free slots to pending operations; look again later when soaking or outside the window."""
    return _advance(rollout_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def operation_run(operation_id: int) -> str:
    """Run one node operation; a second delivery finds it claimed and does nothing."""
    outcome = services.operation_execute(operation_id=operation_id, worker=_worker_name())
    if outcome is None:
        return "not dispatched"
    if outcome.retry_in is not None:
        operation_run.apply_async((operation_id,), countdown=outcome.retry_in)
    else:
        # The slot this operation held is free: fill it from here, without a round trip
        # through the broker.
        _advance(outcome.operation.rollout_id)
    return outcome.operation.state


@shared_task
def rollouts_reconcile() -> str:
    """Beat: resend operations whose worker died or whose message was lost; advance every
    active rollout (soak ends, windows open, busy nodes free up)."""
    resent = services.operations_recover()
    for operation_id in resent:
        operation_run.delay(operation_id)
    active = services.rollouts_active()
    for rollout_id in active:
        rollout_advance.delay(rollout_id)
    return f"resent {len(resent)} operations, advanced {len(active)} rollouts"
