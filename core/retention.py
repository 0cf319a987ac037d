"""Retention: rows past a configurable age are deleted a batch at a time, in short transactions.

The audit log is kept forever unless a retention is set (``PIDNS_EVENT_RETENTION_DAYS``); node
observations have their own retention in :mod:`nodes.observations`.
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import QuerySet
from django.utils import timezone

from .models import AuditEvent


def delete_in_batches(queryset: QuerySet, batch: int = 10_000) -> int:
    total = 0
    while True:
        ids = list(queryset.order_by().values_list("id", flat=True)[:batch])
        if not ids:
            return total
        total += queryset.model.objects.filter(id__in=ids).delete()[0]


def delete_older_than(queryset: QuerySet, field: str, days: int, batch: int = 10_000) -> int:
    """Delete the rows of ``queryset`` whose ``field`` is older than ``days``; 0 keeps them all."""
    if days <= 0:
        return 0
    cutoff = timezone.now() - timedelta(days=days)
    return delete_in_batches(queryset.filter(**{f"{field}__lt": cutoff}), batch)


def events_prune(*, older_than_days: int, batch: int = 10_000) -> int:
    """Delete audit-log events older than ``older_than_days``; 0 keeps them all."""
    return delete_older_than(AuditEvent.objects.all(), "created_at", older_than_days, batch)
