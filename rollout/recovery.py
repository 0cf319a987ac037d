"""Recovery: what a dead worker or a lost message left behind is found again and resumed.

* A running operation whose lease expired lost its worker mid-step: its lease is cleared and the
  step is due again (each step is idempotent), or, after ``PIDNS_OPERATION_MAX_ATTEMPTS`` tries,
  it fails with ``worker-lost``.
* A running operation whose step has been due for a while with no worker on it lost its message
  (a broker restart): it is sent again.
* Every active rollout gets a full pass of the advancer (a soak ended, a window opened, a busy
  node freed up, a hand-over's message was lost).

Each change is a conditional update on what was read, so the reconciler and a late worker never
both win.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core.events import event_record

from .advancer import hand_over
from .models import ROLLOUT_ACTIVE_STATES, NodeOperation, OperationState, Rollout
from .states import OPERATION, UNCORDON

ACTOR = "task:rollouts_reconcile"


def operations_recover(*, now: datetime | None = None) -> list[int]:
    """Operations to send to a worker again. Returns their ids."""
    now = now or timezone.now()
    resend: list[int] = []
    expired = NodeOperation.objects.filter(state=OperationState.RUNNING, lease_until__lt=now).exclude(lease_owner="")
    for op in expired.select_related("node"):
        mine = NodeOperation.objects.filter(
            pk=op.pk, state=OperationState.RUNNING, lease_owner=op.lease_owner, lease_until=op.lease_until
        )
        if op.attempts >= settings.PIDNS_OPERATION_MAX_ATTEMPTS and op.cordoned and op.step != UNCORDON:
            # It cordoned its node: it fails through its uncordon.
            if not mine.update(
                step=UNCORDON,
                lease_owner="",
                lease_until=None,
                wake_at=now,
                error_code="worker-lost",
                error=f"the worker running it stopped {op.attempts} times",
                drain_state={**(op.drain_state or {}), "then": "fail"},
            ):
                continue
            resend.append(op.pk)
        elif op.attempts >= settings.PIDNS_OPERATION_MAX_ATTEMPTS:
            with transaction.atomic():
                if not OPERATION.apply(
                    mine,
                    "fail",
                    error_code="worker-lost",
                    error=f"the worker running it stopped {op.attempts} times",
                    finished_at=now,
                    lease_owner="",
                    lease_until=None,
                    wake_at=None,
                ):
                    continue
                op.refresh_from_db()
                resend += hand_over(op, now).dispatched
        elif mine.update(
            lease_owner="",
            lease_until=None,
            wake_at=now,
            attempts=F("attempts") + 1,
            error=f"worker {op.lease_owner} stopped during {op.step}; running it again",
        ):
            resend.append(op.pk)
        else:
            continue
        event_record(
            actor=ACTOR,
            verb="operation-recovered",
            object_type="rollout",
            object_id=op.rollout_id,
            object_repr=f"{op.phase} {op.node.name}",
            after={"attempts": op.attempts, "step": op.step, "worker": op.lease_owner},
        )
    overdue = now - timedelta(seconds=settings.PIDNS_DISPATCH_STALE_SECONDS)
    resend += list(
        NodeOperation.objects.filter(state=OperationState.RUNNING, lease_owner="", wake_at__lt=overdue)
        .exclude(pk__in=resend)
        .values_list("id", flat=True)
    )
    return resend


def rollouts_active() -> list[int]:
    return list(Rollout.objects.filter(status__in=ROLLOUT_ACTIVE_STATES).values_list("id", flat=True))
