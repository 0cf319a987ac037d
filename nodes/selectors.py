"""Reads of the inventory: lists for the API and dashboard, and SQL-aggregated summaries."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Q, QuerySet

from .models import Cluster, Node

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


def fleet_summary(*, nodes: QuerySet[Node] | None = None) -> dict[str, Any]:
    """Counts of nodes by decided mode, mechanism, observed mode, rollback method and blocker,
    for the whole fleet and per cluster.

    Two queries whatever the fleet size: one GROUP BY over every dimension at once, one for
    the clusters' names and plans.
    """
    nodes = Node.objects.all() if nodes is None else nodes
    columns = list(SUMMARY_DIMENSIONS.values())
    rows = nodes.order_by().values("cluster_id", *columns).annotate(n=Count("id"))
    totals: dict[str, Counter] = {key: Counter() for key in SUMMARY_DIMENSIONS}
    per_cluster: dict[int, dict[str, Counter]] = defaultdict(lambda: {key: Counter() for key in SUMMARY_DIMENSIONS})
    cluster_totals: Counter = Counter()
    for row in rows:
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


def _version_key(label: str) -> tuple:
    """Sort key for release lines (``1.6`` < ``1.10`` < ``17.03``); names after numbers."""
    parts = label.split(".")
    if label and all(p.isdigit() for p in parts):
        return (0, *map(int, parts))
    return (1, label)


def version_matrix(*, nodes: QuerySet[Node] | None = None) -> dict[str, Any]:
    """Nodes by kubelet release line (rows) and runtime release line (columns), with the decided
    modes and the number blocked from shared in each cell. One GROUP BY query.

    Each cell: ``total``, ``modes`` ({mode: count}, largest first), ``mode`` (the largest, for
    its colour), ``blocked`` (nodes that cannot be switched to shared) and ``switchable`` (nodes
    not shared yet that a flag change would make shared).
    """
    nodes = Node.objects.all() if nodes is None else nodes
    rows = (
        nodes.order_by()
        .values("kubelet_minor", "runtime_line", "pid_namespace")
        .annotate(n=Count("id"), blocked=Count("id", filter=~Q(shared_blocker="")))
        .annotate(switchable=Count("id", filter=Q(shared_blocker="") & ~Q(pid_namespace__in=["shared", "unknown"])))
    )
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        cell = cells.setdefault(
            (row["kubelet_minor"] or "unknown", row["runtime_line"] or "unknown"),
            {"total": 0, "modes": Counter(), "blocked": 0, "switchable": 0},
        )
        cell["total"] += row["n"]
        cell["modes"][row["pid_namespace"]] += row["n"]
        cell["blocked"] += row["blocked"]
        cell["switchable"] += row["switchable"]
    kubelets = sorted({k for k, _ in cells}, key=_version_key)
    runtimes = sorted({r for _, r in cells}, key=_version_key)
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
    columns = [{"key": r, "label": f"Docker {r}" if _version_key(r)[0] == 0 else r} for r in runtimes]
    return {"kubelets": kubelets, "runtimes": runtimes, "columns": columns, "rows": table}


OVERVIEW_CACHE_KEY = "pidns:fleet-overview:v2:{cluster}"


def fleet_overview(*, cluster: Cluster | None = None) -> dict[str, Any]:
    """The overview's aggregation over the fleet, or one cluster: summary, version matrix and
    drift. Computed by SQL (five queries), and shared by every open overview of the same scope for
    ``PIDNS_OVERVIEW_CACHE_SECONDS``, so a room of operators watching a 100,000-node fleet costs
    the database one aggregation per period rather than one per page per refresh."""
    ttl = settings.PIDNS_OVERVIEW_CACHE_SECONDS
    key = OVERVIEW_CACHE_KEY.format(cluster=cluster.pk if cluster else "all")
    if ttl > 0:
        cached = cache.get(key)
        if cached is not None:
            return cached
    nodes = Node.objects.filter(cluster=cluster) if cluster else Node.objects.all()
    drifting = node_list(cluster=cluster).filter(drift=True).order_by("cluster__name", "name")
    data = {
        "summary": fleet_summary(nodes=nodes),
        "matrix": version_matrix(nodes=nodes),
        "drift_count": drifting.count(),
        "drifting": [
            {"id": n.pk, "cluster": n.cluster.name, "name": n.name, "fields": [d.get("field") for d in n.drift_details]}
            for n in drifting[:20]
        ],
    }
    if ttl > 0:
        cache.set(key, data, ttl)
    return data
