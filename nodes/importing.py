"""Inventory import: many nodes (and their clusters) at once, all or nothing.

The import runs as named steps: validate the clusters and the nodes, resolve the clusters the nodes
name, refuse duplicates, write the clusters through the cluster services (so a new plan re-decides
every node of its cluster, imported or not), build the node rows (decision columns, desired state
and drift as the inventory services would set them) and write them in batches, then record one
event. Any error stops it before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.events import event_record
from gates.facts import normalize_gate_map
from gates.policy import PLANS

from .decisions import DECISION_COLUMNS, decision_columns
from .models import Cluster, Node, ObservedVia
from .observations import refresh_drift
from .services import (
    CLUSTER_FIELDS,
    InventoryError,
    cluster_create,
    cluster_update,
    desired_from_write,
    observed_gates_of,
)
from .validation import DEFAULTS, FACT_FIELDS, NORMALIZERS, normalize_cluster_name, normalize_labels, validate_node_row

Progress = Callable[[str, int, int], None]
Errors = dict[int, dict[str, list[str]]]

MAX_REPORTED_ERRORS = 1000
REPORTED_FACTS = (*FACT_FIELDS, "docker_api_version")
DESIRED = ("desired_flags", "desired_gates")
# What an existing node must contribute to a row that does not give it.
MERGED = (*REPORTED_FACTS, *DESIRED, "observed_pid_namespace", "observed_via", "observed_gates")


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int
    clusters_created: int
    clusters_updated: int

    @property
    def total(self) -> int:
        return self.created + self.updated


def nodes_import(
    *,
    actor: str,
    nodes: list[Any],
    clusters: list[Any] | None = None,
    progress: Progress | None = None,
    batch_size: int = 2000,
) -> ImportResult:
    """Create or update many nodes (and optionally clusters): all or nothing.

    Nodes are matched by (cluster, name). The fields present in the input are written; a field that
    other rows have but a row lacks takes its default. Raises :class:`InventoryError` with errors
    keyed by section (``nodes``, ``clusters``) and row index; then nothing is written.
    """
    report = progress or (lambda stage, done, total: None)
    cluster_rows, cluster_errors = validate_clusters(clusters or [])
    node_rows, node_errors, present = validate_nodes(nodes, report)
    with transaction.atomic():
        known = resolve_clusters(node_rows, cluster_rows, node_errors)
        refuse_duplicates(node_rows, node_errors)
        if node_errors or cluster_errors:
            raise _reject({"nodes": node_errors, "clusters": cluster_errors})
        clusters_created, clusters_updated = write_clusters(actor, cluster_rows)
        rows = Cluster.objects.filter(name__in=known).values_list("name", "id", "plan", "desired_gates")
        clusters = {name: (pk, plan, gates) for name, pk, plan, gates in rows}
        objects, created = build_nodes(actor, node_rows, present, clusters, timezone.now())
        write_nodes(objects, present, batch_size, report)
        result = ImportResult(created, len(objects) - created, clusters_created, clusters_updated)
        event_record(
            actor=actor,
            verb="import",
            object_type="node",
            object_repr=f"{len(objects)} nodes",
            after={
                "created": result.created,
                "updated": result.updated,
                "clusters": sorted(known),
                "clusters_created": clusters_created,
                "clusters_updated": clusters_updated,
            },
        )
    return result


# --- steps ------------------------------------------------------------------------------------------


def validate_clusters(rows: Iterable[Any]) -> tuple[list[dict], Errors]:
    clean_rows, errors = [], {}
    for index, row in enumerate(rows):
        row_errors: dict[str, list[str]] = {}
        if not isinstance(row, Mapping):
            errors[index] = {"non_field_errors": ["each cluster must be an object"]}
            continue
        for key in row:
            if key not in CLUSTER_FIELDS:
                row_errors.setdefault(str(key)[:60], []).append("unknown field")
        clean: dict[str, Any] = {}
        try:
            clean["name"] = normalize_cluster_name(row.get("name"))
        except ValueError as exc:
            row_errors.setdefault("name", []).append(str(exc))
        plan = row.get("plan", "proposal")
        if plan not in PLANS:
            row_errors.setdefault("plan", []).append(f"{str(plan)[:40]!r} is not a plan (one of {', '.join(PLANS)})")
        clean["plan"] = plan
        description = row.get("description", "")
        if not isinstance(description, str) or len(description) > 2000 or "\x00" in description:
            row_errors.setdefault("description", []).append("must be text of at most 2000 characters")
        clean["description"] = description
        try:
            clean["labels"] = normalize_labels(row.get("labels"))
        except ValueError as exc:
            row_errors.setdefault("labels", []).append(str(exc))
        if "desired_gates" in row:
            try:
                clean["desired_gates"] = normalize_gate_map(row["desired_gates"] or {})
            except ValueError as exc:
                row_errors.setdefault("desired_gates", []).append(str(exc))
        if row_errors:
            errors[index] = row_errors
        else:
            clean_rows.append(clean)
    return clean_rows, errors


def validate_nodes(rows: list[Any], report: Progress) -> tuple[list[dict], Errors, set[str]]:
    clean_rows: list[dict[str, Any]] = []
    errors: Errors = {}
    present: set[str] = set()
    total = len(rows)
    for index, row in enumerate(rows):
        clean, row_errors = validate_node_row(row)
        if row_errors:
            errors[index] = row_errors
        clean_rows.append(clean)
        present.update(clean)
        if index % 5000 == 4999:
            report("validate", index + 1, total)
    report("validate", total, total)
    return clean_rows, errors, present


def resolve_clusters(node_rows: list[dict], cluster_rows: list[dict], errors: Errors) -> set[str]:
    """The names of the clusters the nodes name, each existing or created by this import."""
    names = {row["cluster"] for row in node_rows if "cluster" in row}
    known = set(Cluster.objects.filter(name__in=names).values_list("name", flat=True))
    known |= {c["name"] for c in cluster_rows} & names
    for index, row in enumerate(node_rows):
        if "cluster" in row and row["cluster"] not in known:
            errors.setdefault(index, {}).setdefault("cluster", []).append(f"no cluster named {row['cluster']!r}")
    return known


def refuse_duplicates(node_rows: list[dict], errors: Errors) -> None:
    seen: dict[tuple[str, str], int] = {}
    for index, row in enumerate(node_rows):
        key = (row.get("cluster"), row.get("name"))
        if None in key:
            continue
        if key in seen:
            errors.setdefault(index, {}).setdefault("name", []).append(
                f"node {key[1]} of cluster {key[0]} is already at index {seen[key]}"
            )
        else:
            seen[key] = index


def write_clusters(actor: str, cluster_rows: list[dict]) -> tuple[int, int]:
    """Create or change the clusters through the cluster services (events, and decisions refreshed
    when a plan changes). Returns (created, updated)."""
    existing = {c.name: c for c in Cluster.objects.filter(name__in=[r["name"] for r in cluster_rows])}
    created = updated = 0
    for row in cluster_rows:
        cluster = existing.get(row["name"])
        if cluster is None:
            cluster_create(actor=actor, **row)
            created += 1
            continue
        changes = {k: v for k, v in row.items() if k != "name" and getattr(cluster, k) != v}
        if changes:
            cluster_update(actor=actor, cluster=cluster, **changes)
        updated += 1
    return created, updated


def build_nodes(
    actor: str,
    node_rows: list[dict],
    present: set[str],
    clusters: dict[str, tuple[int, str, dict]],
    now: datetime,
) -> tuple[list[Node], int]:
    """The node rows to write, with what the inventory services would derive for each. Returns
    (rows, how many are new)."""
    written = [f for f in NORMALIZERS if f in present and f != "name"]
    ids = {name: pk for name, (pk, _, _) in clusters.items()}
    cluster_gates = {name: gates for name, (_, _, gates) in clusters.items()}
    existing: dict[tuple[int, str], dict[str, Any]] = {}
    for values in Node.objects.filter(cluster_id__in=list(ids.values())).values("cluster_id", "name", *MERGED):
        existing[(values.pop("cluster_id"), values.pop("name"))] = values
    reports_facts = any(f in present for f in REPORTED_FACTS)
    objects: list[Node] = []
    created = 0
    for row in node_rows:
        cluster_id, plan, gates = clusters[row["cluster"]]
        values = {f: row.get(f, DEFAULTS[f]) for f in written}
        previous = existing.get((cluster_id, row["name"]))
        created += previous is None
        merged = {**(previous or {}), **values}
        merged.update(desired_from_write(values, cluster_gates[row["cluster"]]))
        merged.update(observed_gates_of(values))
        node = Node(cluster_id=cluster_id, name=row["name"], created_at=now, updated_at=now)
        for field_name, value in merged.items():
            setattr(node, field_name, value)
        if reports_facts:
            node.observed_via, node.observed_at = ObservedVia.INVENTORY, now
        if "desired_flags" in merged and (set(DESIRED) & present or "kubelet_flags" in present):
            node.desired_source, node.desired_at = actor[:200], now
        node.cluster = Cluster(pk=cluster_id, plan=plan, desired_gates=gates)
        for column, value in decision_columns(node.facts(), plan).items():
            setattr(node, column, value)
        refresh_drift(node)
        objects.append(node)
    return objects, created


def write_nodes(objects: list[Node], present: set[str], batch_size: int, report: Progress) -> None:
    written = [f for f in NORMALIZERS if f in present and f != "name"]
    fields = [*written, *DECISION_COLUMNS, "drift", "drift_details", "updated_at"]
    if any(f in present for f in REPORTED_FACTS):
        fields += ["observed_via", "observed_at"]
    if "kubelet_flags" in present:
        fields.append("observed_gates")
    if set(DESIRED) & present or "kubelet_flags" in present:
        fields += [f for f in (*DESIRED, "desired_source", "desired_at") if f not in fields]
    total = len(objects)
    for start in range(0, total, batch_size):
        Node.objects.bulk_create(
            objects[start : start + batch_size],
            update_conflicts=True,
            unique_fields=["cluster", "name"],
            update_fields=fields,
        )
        report("write", min(start + batch_size, total), total)


def _reject(errors: dict[str, Errors]) -> InventoryError:
    """The error for a refused import, listing at most MAX_REPORTED_ERRORS rows per section."""
    report: dict[str, Any] = {}
    total = 0
    for section, rows in errors.items():
        if not rows:
            continue
        total += len(rows)
        report[section] = {str(i): rows[i] for i in sorted(rows)[:MAX_REPORTED_ERRORS]}
    if any(len(rows) > MAX_REPORTED_ERRORS for rows in errors.values()):
        report["non_field_errors"] = [
            f"{total} rows have errors; the first {MAX_REPORTED_ERRORS} of each kind are listed"
        ]
    return InventoryError(report)
