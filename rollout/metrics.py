"""Rollout metrics for Prometheus (see :mod:`core.metrics`): rollouts by status, node operations
by state and error code, and how long operations took."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily, Metric

from core.metrics import PREFIX, histogram

from .models import NodeOperation, Rollout

OPERATION_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)


class RolloutCollector:
    def collect(self) -> Iterator[Metric]:
        rollouts = GaugeMetricFamily(f"{PREFIX}_rollouts", "Rollouts by status.", labels=["status"])
        for status, n in Rollout.objects.order_by().values_list("status").annotate(n=Count("id")):
            rollouts.add_metric([status], float(n))
        yield rollouts
        operations = GaugeMetricFamily(
            f"{PREFIX}_operations", "Node operations by state and error code.", labels=["state", "error_code"]
        )
        rows = NodeOperation.objects.order_by().values_list("state", "error_code").annotate(n=Count("id"))
        for state, code, n in rows:
            operations.add_metric([state, code], float(n))
        yield operations
        yield histogram(
            f"{PREFIX}_operation_duration_seconds",
            "Time from an operation's start to its end, over finished operations.",
            NodeOperation.objects.all(),
            "duration_seconds",
            OPERATION_BUCKETS,
        )
