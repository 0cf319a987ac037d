"""Retention of node observations.

Audits write one observation per node per audit (a 100,000-node fleet audited every 15 minutes
writes 9.6 million a day), so observations have a retention by default; each node keeps its latest
state on its own row and each audit its counts.
"""

from __future__ import annotations

from core.retention import delete_older_than

from .models import NodeObservation


def observations_prune(*, older_than_days: int, batch: int = 10_000) -> int:
    """Delete node observations older than ``older_than_days``; 0 keeps them all."""
    return delete_older_than(NodeObservation.objects.all(), "observed_at", older_than_days, batch)
