"""Celery tasks for audits. Thin: ids in, a service call, retry policy here."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction

from core.retention import events_prune
from core.throttles import sign_in_prune

from . import audits
from .models import Audit, AuditStatus
from .retention import observations_prune

log = logging.getLogger(__name__)


def audit_enqueue(audit: Audit) -> None:
    """Send the audit to a worker once the transaction that created it commits."""
    transaction.on_commit(lambda: audit_run.delay(audit.pk))


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.PIDNS_AUDIT_TIME_LIMIT + 60,
    time_limit=settings.PIDNS_AUDIT_TIME_LIMIT + 120,
)
def audit_run(audit_id: int) -> str:
    """Run one queued audit. A second delivery finds it claimed and does nothing. The audit keeps its
    own time limit; the worker's soft limit is a backstop that ends the same way: queued again
    (and sent again) to resume, or timed-out on its last attempt."""
    try:
        audit = audits.audit_execute(audit_id=audit_id)
    except SoftTimeLimitExceeded:
        audit = Audit.objects.get(pk=audit_id)
        status = audits.audit_out_of_time(audit=audit, reason="the worker's time limit was reached")
        audit.status = status or audit.status
    if audit is None:
        return "not queued"
    if audit.status == AuditStatus.QUEUED:
        audit_enqueue(audit)
        return "requeued to resume"
    return audit.status


@shared_task
def audit_scheduled() -> str:
    """Beat: audit the whole fleet, unless an audit is already active."""
    try:
        with transaction.atomic():
            audit = audits.audit_create(actor="task:audit_scheduled")
            audit_enqueue(audit)
    except audits.AuditConflict as exc:
        return f"skipped: {exc}"
    return f"queued audit {audit.pk}"


@shared_task
def reconcile() -> str:
    """Beat: resume audits whose worker died, and re-send queued audits whose message was lost."""
    resumed = 0
    for audit in audits.audits_stale(older_than=settings.PIDNS_AUDIT_STALE_SECONDS):
        if audit.status == AuditStatus.RUNNING and not audits.audit_requeue(
            audit=audit, reason="worker stopped; resumed"
        ):
            continue
        audit_run.delay(audit.pk)
        resumed += 1
    return f"resumed {resumed}"


@shared_task
def prune() -> str:
    """Beat: delete node observations and audit-log events past their retention."""
    observations = observations_prune(older_than_days=settings.PIDNS_OBSERVATION_RETENTION_DAYS)
    events = events_prune(older_than_days=settings.PIDNS_EVENT_RETENTION_DAYS)
    sign_in_prune()
    return f"deleted {observations} observations, {events} events"


@shared_task(acks_late=True, reject_on_worker_lost=True)
def cluster_sync(cluster_id: int, actor: str = "task:cluster_sync") -> str:
    """Sync one cluster's nodes from its Kubernetes API."""
    from .kubesync import SyncError
    from .kubesync import cluster_sync as sync
    from .models import Cluster

    cluster = Cluster.objects.filter(pk=cluster_id).first()
    if cluster is None:
        return "no such cluster"
    try:
        return str(sync(actor=actor, cluster=cluster))
    except SyncError as exc:
        return f"failed: {exc}"


@shared_task
def clusters_sync_scheduled() -> str:
    """Beat: sync every cluster that has a Kubernetes API."""
    from .models import Cluster

    ids = list(Cluster.objects.exclude(kube_api_server="").values_list("id", flat=True))
    for cluster_id in ids:
        cluster_sync.delay(cluster_id, "task:clusters_sync_scheduled")
    return f"sent {len(ids)} cluster syncs"
