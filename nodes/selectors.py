"""Reads of the inventory: lists for the API and dashboard, and SQL-aggregated summaries."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Count, QuerySet, Sum

from .models import COUNTED_COLUMNS, Cluster, Node, NodeCount

SUMMARY_DIMENSIONS = {
    "by_pid_namespace": "pid_namespace",
    "by_mechanism": "mechanism",
    "by_observed_pid_namespace": "observed_pid_namespace",
    "by_rollback_method": "rollback_method",
    "blockers_to_shared": "shared_blocker",
    "blockers_to_isolated": "isolated_blocker",
}


def node_list(*, cluster: Cluster | None = None) -> QuerySet[Node]:
    """Nodes with their cluster, for lists of any size (one query per page)."""
    qs = Node.objects.select_related("cluster", "docker_credential")
    if cluster is not None:
        qs = qs.filter(cluster=cluster)
    return qs


def cluster_named(name: str) -> Cluster | None:
    """The cluster called ``name``, or None. Text no name can be (a NUL character, too long) is
    not asked of the database (PostgreSQL refuses NUL in text)."""
    if not name or "\x00" in name or len(name) > Cluster._meta.get_field("name").max_length:
        return None
    return Cluster.objects.filter(name=name).first()


def node_counts(*, cluster: Cluster | None = None) -> list[dict[str, Any]]:
    """Nodes per combination of the counted columns (:data:`COUNTED_COLUMNS`), from the counts the
    database keeps (:class:`NodeCount`): one query over a table as large as the number of
    combinations, whatever the number of nodes. Rows ``n`` with each combination's columns.

    When changes have piled up (more than ``COMPACT_AT`` rows read), they are folded into one row
    per combination, in one statement that concurrent writers do not wait on."""
    counts = NodeCount.objects.all() if cluster is None else NodeCount.objects.filter(cluster_id=cluster.pk)
    rows = list(counts.order_by().values(*COUNTED_COLUMNS).annotate(total=Sum("n"), rows=Count("id")))
    if sum(row["rows"] for row in rows) > COMPACT_AT:
        node_counts_compact()
    return [
        {**{c: row[c] for c in COUNTED_COLUMNS}, "n": row["total"]}
        for row in rows
        if row["total"]  # a combination no node has any more
    ]


COMPACT_AT = 2000


def node_counts_compact() -> None:
    """Fold the count rows into one per combination (zero counts dropped). On PostgreSQL one
    statement deletes the rows it sums, so a change appended meanwhile is kept, not lost; SQLite
    runs it in a transaction that holds the write lock."""
    table = NodeCount._meta.db_table
    cols = ", ".join(COUNTED_COLUMNS)
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"WITH gone AS (DELETE FROM {table} RETURNING {cols}, n) "  # noqa: S608 (names from the model)
                f"INSERT INTO {table} ({cols}, n) SELECT {cols}, sum(n) FROM gone GROUP BY {cols} HAVING sum(n) <> 0"
            )
        else:
            cursor.execute(f"SELECT coalesce(max(id), 0) FROM {table}")  # noqa: S608
            (last,) = cursor.fetchone()
            cursor.execute(
                f"INSERT INTO {table} ({cols}, n) SELECT {cols}, sum(n) FROM {table} "  # noqa: S608
                f"WHERE id <= %s GROUP BY {cols} HAVING sum(n) <> 0",
                [last],
            )
            cursor.execute(f"DELETE FROM {table} WHERE id <= %s", [last])  # noqa: S608


def fleet_summary(*, cluster: Cluster | None = None, counts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Counts of nodes by decided mode, mechanism, observed mode, rollback method and blocker,
    for the whole fleet (or one cluster) and per cluster. Two small queries whatever the fleet
    size: the kept counts (:func:`node_counts`), and the clusters' names and plans."""
    totals: dict[str, Counter] = {key: Counter() for key in SUMMARY_DIMENSIONS}
    per_cluster: dict[int, dict[str, Counter]] = defaultdict(lambda: {key: Counter() for key in SUMMARY_DIMENSIONS})
    cluster_totals: Counter = Counter()
    for row in node_counts(cluster=cluster) if counts is None else counts:
        n = row["n"]
        cluster_totals[row["cluster_id"]] += n
        for key, column in SUMMARY_DIMENSIONS.items():
            value = row[column]
            if key.startswith("blockers_") and not value:
                continue
            label = value or "none"
            totals[key][label] += n
            per_cluster[row["cluster_id"]][key][label] += n
    clusters = Cluster.objects.filter(pk__in=list(cluster_totals)).order_by("name").values("id", "name", "plan")
    return {
        "total": sum(cluster_totals.values()),
        **{key: dict(sorted(counter.items())) for key, counter in totals.items()},
        "clusters": [
            {
                "name": c["name"],
                "plan": c["plan"],
                "total": cluster_totals[c["id"]],
                **{key: dict(sorted(counter.items())) for key, counter in per_cluster[c["id"]].items()},
            }
            for c in clusters
        ],
    }


def version_key(label: str) -> tuple:
    """Sort key for release lines (``1.6`` < ``1.10`` < ``17.03``); names after numbers."""
    parts = label.split(".")
    if label and all(p.isdigit() for p in parts):
        return (0, *map(int, parts))
    return (1, label)


def version_matrix(*, cluster: Cluster | None = None, counts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Nodes by kubelet release line (rows) and runtime release line (columns), with the decided
    modes and the number blocked from shared in each cell, from the kept counts.

    Each cell: ``total``, ``modes`` ({mode: count}, largest first), ``mode`` (the largest, for
    its colour), ``blocked`` (nodes that cannot be switched to shared) and ``switchable`` (nodes
    not shared yet that a flag change would make shared).
    """
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for row in node_counts(cluster=cluster) if counts is None else counts:
        cell = cells.setdefault(
            (row["kubelet_minor"] or "unknown", row["runtime_line"] or "unknown"),
            {"total": 0, "modes": Counter(), "blocked": 0, "switchable": 0},
        )
        n, mode = row["n"], row["pid_namespace"]
        cell["total"] += n
        cell["modes"][mode] += n
        if row["shared_blocker"]:
            cell["blocked"] += n
        elif mode not in ("shared", "unknown"):
            cell["switchable"] += n
    kubelets = sorted({k for k, _ in cells}, key=version_key)
    runtimes = sorted({r for _, r in cells}, key=version_key)
    table = []
    for kubelet in kubelets:
        row_cells = []
        for runtime in runtimes:
            cell = cells.get((kubelet, runtime))
            if cell is not None:
                modes = sorted(cell["modes"].items(), key=lambda item: (-item[1], item[0]))
                cell = {**cell, "modes": dict(modes), "mode": modes[0][0]}
            row_cells.append({"runtime": runtime, "cell": cell})
        table.append({"kubelet": kubelet, "cells": row_cells})
    columns = [{"key": r, "label": f"Docker {r}" if version_key(r)[0] == 0 else r} for r in runtimes]
    return {"kubelets": kubelets, "runtimes": runtimes, "columns": columns, "rows": table}


OVERVIEW_CACHE_KEY = "pidns:fleet-overview:v2:{cluster}"


def fleet_overview(*, cluster: Cluster | None = None) -> dict[str, Any]:
    """The overview's aggregation over the fleet, or one cluster: summary, version matrix and
    drift, and the nodes whose last reading failed. Computed from the kept counts and the first
    drifting and unread nodes (five small queries whatever the fleet's size), and shared by every
    open overview of the same scope for ``PIDNS_OVERVIEW_CACHE_SECONDS``."""
    ttl = settings.PIDNS_OVERVIEW_CACHE_SECONDS
    key = OVERVIEW_CACHE_KEY.format(cluster=cluster.pk if cluster else "all")
    if ttl > 0:
        cached = cache.get(key)
        if cached is not None:
            return cached
    counts = node_counts(cluster=cluster)
    drifting = (
        Node.objects.filter(drift=True, **({"cluster": cluster} if cluster else {}))
        .select_related("cluster")
        .only("id", "name", "drift_details", "cluster__name")
        .order_by("cluster__name", "name")
    )
    unread = (
        Node.objects.exclude(audit_error_code="")
        .filter(**({"cluster": cluster} if cluster else {}))
        .select_related("cluster")
        .only("id", "name", "audit_error_code", "audit_error", "cluster__name")
        .order_by("cluster__name", "name")
    )
    data = {
        "unread_count": unread.count(),
        "unread": [
            {"id": n.pk, "cluster": n.cluster.name, "name": n.name, "code": n.audit_error_code, "error": n.audit_error}
            for n in unread[:20]
        ],
        "summary": fleet_summary(counts=counts),
        "matrix": version_matrix(counts=counts),
        "drift_count": sum(row["n"] for row in counts if row["drift"]),
        "drifting": [
            {"id": n.pk, "cluster": n.cluster.name, "name": n.name, "fields": [d.get("field") for d in n.drift_details]}
            for n in drifting[:20]
        ],
    }
    if ttl > 0:
        cache.set(key, data, ttl)
    return data


HISTORY_RANGES = {"24h": (24 * 3600, 24), "7d": (7 * 86400, 28), "30d": (30 * 86400, 30)}


def cluster_history(cluster: Cluster, range_key: str = "24h", now=None) -> list[dict[str, Any]]:
    """The cluster's nodes by observed mode, and how many drifted, at the end of each step of the
    range, from the stored observations: each node counts as its last reading up to that moment
    (a node never read before the range starts counts from its first reading in it). One query for
    the readings in the range, one for each node's last reading before it."""
    from datetime import timedelta

    from django.db.models import OuterRef, Subquery
    from django.utils import timezone

    from .models import NodeObservation

    seconds, steps = HISTORY_RANGES[range_key]
    now = now or timezone.now()
    start = now - timedelta(seconds=seconds)
    step = timedelta(seconds=seconds / steps)
    readings = NodeObservation.objects.filter(node__cluster=cluster)
    before = NodeObservation.objects.filter(node=OuterRef("pk"), observed_at__lt=start).order_by("-observed_at", "-id")
    state: dict[int, tuple[str, bool]] = {}
    for node_id, mode, drift in (
        Node.objects.filter(cluster=cluster)
        .annotate(
            last_mode=Subquery(before.values("observed_pid_namespace")[:1]),
            last_drift=Subquery(before.values("drift")[:1]),
        )
        .filter(last_mode__isnull=False)
        .values_list("id", "last_mode", "last_drift")
    ):
        state[node_id] = (mode, bool(drift))
    in_range = (
        readings.filter(observed_at__gte=start, observed_at__lte=now)
        .order_by("observed_at", "id")
        .values_list("node_id", "observed_at", "observed_pid_namespace", "drift")
    )
    points: list[dict[str, Any]] = []
    rows = iter(in_range.iterator(chunk_size=5000))
    pending = next(rows, None)
    for index in range(1, steps + 1):
        end = start + step * index
        while pending is not None and pending[1] <= end:
            state[pending[0]] = (pending[2], pending[3])
            pending = next(rows, None)
        modes: dict[str, int] = {}
        for mode, _ in state.values():
            modes[mode] = modes.get(mode, 0) + 1
        points.append({"at": end, "modes": modes, "drift": sum(1 for _, drift in state.values() if drift)})
    return points
