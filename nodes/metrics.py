"""Inventory metrics for Prometheus (see :mod:`core.metrics`): nodes per cluster by decided and
observed mode, nodes in drift, audits by status and their duration."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from django.db.models import Count, DurationField, ExpressionWrapper, F
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric

from core.metrics import PREFIX

from .models import Audit, Cluster
from .selectors import node_counts

AUDIT_BUCKETS = (1, 5, 15, 60, 300, 900, 1800, 3600)


class InventoryCollector:
    def collect(self) -> Iterator[Metric]:
        names = dict(Cluster.objects.values_list("id", "name"))
        modes: Counter = Counter()
        drifting: Counter = Counter()
        for row in node_counts():
            cluster = names.get(row["cluster_id"])
            if cluster is None:
                continue
            modes[(cluster, row["pid_namespace"], row["observed_pid_namespace"])] += row["n"]
            if row["drift"]:
                drifting[cluster] += row["n"]
        nodes = GaugeMetricFamily(
            f"{PREFIX}_nodes",
            "Nodes by cluster, decided PID namespace and the one last observed.",
            labels=["cluster", "pid_namespace", "observed_pid_namespace"],
        )
        for labels, n in sorted(modes.items()):
            nodes.add_metric(list(labels), float(n))
        yield nodes
        drift = GaugeMetricFamily(f"{PREFIX}_nodes_drifting", "Nodes in drift, by cluster.", labels=["cluster"])
        for cluster in sorted(names.values()):
            drift.add_metric([cluster], float(drifting[cluster]))
        yield drift
        audits = GaugeMetricFamily(f"{PREFIX}_audits", "Audits by status.", labels=["status"])
        for status, n in Audit.objects.order_by().values_list("status").annotate(n=Count("id")):
            audits.add_metric([status], float(n))
        yield audits
        yield self._audit_durations()

    @staticmethod
    def _audit_durations() -> HistogramMetricFamily:
        durations = [
            took.total_seconds()
            for took in Audit.objects.filter(finished_at__isnull=False, started_at__isnull=False)
            .annotate(took=ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField()))
            .values_list("took", flat=True)
        ]
        points = [(str(float(bound)), sum(1 for d in durations if d <= bound)) for bound in AUDIT_BUCKETS]
        points.append(("+Inf", len(durations)))
        family = HistogramMetricFamily(f"{PREFIX}_audit_duration_seconds", "Time from an audit's start to its end.")
        family.add_metric([], points, sum_value=sum(durations))
        return family
