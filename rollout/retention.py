"""Retention: old node observations and audit-log events are deleted after a configurable age.

Audits write one observation per node per audit (a 100,000-node fleet audited every 15 minutes
writes 9.6 million a day), so observations have a retention by default; each node keeps its latest
state on its own row and each audit its counts. The audit log is kept forever unless a retention is
set. Deletes go a batch at a time, in short transactions.
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import QuerySet
from django.utils import timezone

from nodes.models import NodeObservation

from .models import AuditEvent


def delete_in_batches(queryset: QuerySet, batch: int = 10_000) -> int:
    total = 0
    while True:
        ids = list(queryset.order_by().values_list("id", flat=True)[:batch])
        if not ids:
            return total
        total += queryset.model.objects.filter(id__in=ids).delete()[0]


def observations_prune(*, older_than_days: int, batch: int = 10_000) -> int:
    """Delete node observations older than ``older_than_days``; 0 keeps them all."""
    if older_than_days <= 0:
        return 0
    cutoff = timezone.now() - timedelta(days=older_than_days)
    return delete_in_batches(NodeObservation.objects.filter(observed_at__lt=cutoff), batch)


def events_prune(*, older_than_days: int, batch: int = 10_000) -> int:
    """Delete audit-log events older than ``older_than_days``; 0 keeps them all."""
    if older_than_days <= 0:
        return 0
    cutoff = timezone.now() - timedelta(days=older_than_days)
    return delete_in_batches(AuditEvent.objects.filter(created_at__lt=cutoff), batch)
