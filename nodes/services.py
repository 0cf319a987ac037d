"""Writes to the inventory. Every change keeps the decision columns in step and is audited."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import ProtectedError
from django.utils import timezone

from core.events import event_record
from gates.policy import PLANS

from .decisions import DECISION_COLUMNS, decision_columns
from .models import Cluster, DockerCredential, Node
from .validation import (
    DEFAULTS,
    FACT_FIELDS,
    NORMALIZERS,
    normalize_cluster_name,
    normalize_labels,
    validate_node_row,
)

Progress = Callable[[str, int, int], None]

NODE_SNAPSHOT_FIELDS = (
    "name",
    "labels",
    "docker_endpoint",
    "managed",
    "docker_insecure",
    *FACT_FIELDS,
    "docker_api_version",
)
CLUSTER_FIELDS = ("name", "plan", "description", "labels")
MAX_REPORTED_ERRORS = 1000


class InventoryError(Exception):
    """A change the inventory refuses; ``errors`` maps fields to messages."""

    def __init__(self, errors: Mapping[str, Any]):
        self.errors = dict(errors)
        super().__init__(str(self.errors))


def node_snapshot(node: Node) -> dict[str, Any]:
    data = {f: getattr(node, f) for f in NODE_SNAPSHOT_FIELDS}
    data["cluster"] = node.cluster.name
    data["docker_credential"] = node.docker_credential.name if node.docker_credential_id else None
    return data


def cluster_snapshot(cluster: Cluster) -> dict[str, Any]:
    data = {f: getattr(cluster, f) for f in CLUSTER_FIELDS}
    data["docker_credential"] = cluster.docker_credential.name if cluster.docker_credential_id else None
    return data


def _apply_decision(node: Node, plan: str) -> None:
    for column, value in decision_columns(node.facts(), plan).items():
        setattr(node, column, value)


# --- clusters ------------------------------------------------------------------------------------


@transaction.atomic
def cluster_create(
    *, actor: str, name: str, plan: str = "proposal", description: str = "", labels: dict | None = None
) -> Cluster:
    """Create a cluster."""
    cluster = Cluster.objects.create(name=name, plan=plan, description=description, labels=labels or {})
    event_record(
        actor=actor,
        verb="create",
        object_type="cluster",
        object_id=cluster.pk,
        object_repr=cluster.name,
        after=cluster_snapshot(cluster),
    )
    return cluster


@transaction.atomic
def cluster_update(*, actor: str, cluster: Cluster, **changes: Any) -> Cluster:
    """Change a cluster. A new plan re-decides every node of the cluster."""
    before = cluster_snapshot(cluster)
    for field_name, value in changes.items():
        if field_name not in (*CLUSTER_FIELDS, "docker_credential"):
            raise InventoryError({field_name: ["this field cannot be changed"]})
        setattr(cluster, field_name, value)
    cluster.save()
    if before["plan"] != cluster.plan:
        cluster_refresh_decisions(cluster=cluster)
    event_record(
        actor=actor,
        verb="update",
        object_type="cluster",
        object_id=cluster.pk,
        object_repr=cluster.name,
        before=before,
        after=cluster_snapshot(cluster),
    )
    return cluster


@transaction.atomic
def cluster_delete(*, actor: str, cluster: Cluster) -> None:
    """Delete a cluster that has no nodes left."""
    before = cluster_snapshot(cluster)
    pk = cluster.pk
    try:
        cluster.delete()
    except ProtectedError:
        raise InventoryError(
            {"cluster": [f"cluster {cluster.name} still has nodes; delete or move them first"]}
        ) from None
    event_record(
        actor=actor, verb="delete", object_type="cluster", object_id=pk, object_repr=before["name"], before=before
    )


def cluster_refresh_decisions(*, cluster: Cluster, batch_size: int = 2000) -> int:
    """Recompute the stored decision columns of a cluster's nodes. Returns how many changed."""
    changed: list[Node] = []
    count = 0
    fields = ("id", *FACT_FIELDS, *DECISION_COLUMNS)
    for node in Node.objects.filter(cluster=cluster).only(*fields).iterator(chunk_size=batch_size):
        columns = decision_columns(node.facts(), cluster.plan)
        if any(getattr(node, c) != v for c, v in columns.items()):
            for c, v in columns.items():
                setattr(node, c, v)
            changed.append(node)
        if len(changed) >= batch_size:
            count += len(changed)
            Node.objects.bulk_update(changed, DECISION_COLUMNS)
            changed = []
    if changed:
        count += len(changed)
        Node.objects.bulk_update(changed, DECISION_COLUMNS)
    return count


# --- credentials ---------------------------------------------------------------------------------


def credential_snapshot(credential: DockerCredential) -> dict[str, Any]:
    """What the audit log keeps of a credential: never the key."""
    return {
        "name": credential.name,
        "has_client_cert": bool(credential.client_cert),
        "has_client_key": bool(credential.client_key),
    }


@transaction.atomic
def credential_save(*, actor: str, credential: DockerCredential | None = None, **values: Any) -> DockerCredential:
    """Create a credential, or change one (a key left out keeps the stored key)."""
    before = credential_snapshot(credential) if credential else None
    credential = credential or DockerCredential()
    for field_name, value in values.items():
        setattr(credential, field_name, value)
    credential.save()
    event_record(
        actor=actor,
        verb="update" if before else "create",
        object_type="credential",
        object_id=credential.pk,
        object_repr=credential.name,
        before=before,
        after=credential_snapshot(credential),
    )
    return credential


@transaction.atomic
def credential_delete(*, actor: str, credential: DockerCredential) -> None:
    before = credential_snapshot(credential)
    pk = credential.pk
    try:
        credential.delete()
    except ProtectedError:
        raise InventoryError({"credential": [f"credential {credential.name} is in use"]}) from None
    event_record(
        actor=actor, verb="delete", object_type="credential", object_id=pk, object_repr=before["name"], before=before
    )


# --- nodes ---------------------------------------------------------------------------------------


@transaction.atomic
def node_create(*, actor: str, cluster: Cluster, name: str, **values: Any) -> Node:
    """Create a node with its decision columns filled."""
    node = Node(cluster=cluster, name=name, **values)
    _apply_decision(node, cluster.plan)
    node.save()
    event_record(
        actor=actor,
        verb="create",
        object_type="node",
        object_id=node.pk,
        object_repr=f"{cluster.name}/{name}",
        after=node_snapshot(node),
    )
    return node


@transaction.atomic
def node_update(*, actor: str, node: Node, **changes: Any) -> Node:
    """Change a node; facts or a move to another cluster re-decide it."""
    before = node_snapshot(node)
    for field_name, value in changes.items():
        if field_name not in (*NODE_SNAPSHOT_FIELDS, "cluster", "docker_credential"):
            raise InventoryError({field_name: ["this field cannot be changed"]})
        setattr(node, field_name, value)
    _apply_decision(node, node.cluster.plan)
    node.save()
    event_record(
        actor=actor,
        verb="update",
        object_type="node",
        object_id=node.pk,
        object_repr=f"{node.cluster.name}/{node.name}",
        before=before,
        after=node_snapshot(node),
    )
    return node


@transaction.atomic
def node_delete(*, actor: str, node: Node) -> None:
    before = node_snapshot(node)
    pk = node.pk
    node.delete()
    event_record(
        actor=actor,
        verb="delete",
        object_type="node",
        object_id=pk,
        object_repr=f"{before['cluster']}/{before['name']}",
        before=before,
    )


# --- import --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int
    clusters_created: int
    clusters_updated: int

    @property
    def total(self) -> int:
        return self.created + self.updated


def _validate_cluster_rows(rows: Iterable[Any]) -> tuple[list[dict], dict[int, dict[str, list[str]]]]:
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
        if row_errors:
            errors[index] = row_errors
        else:
            clean_rows.append(clean)
    return clean_rows, errors


def _reject(errors: dict[str, dict[int, Any]]) -> InventoryError:
    """Build the error for a refused import, listing at most MAX_REPORTED_ERRORS rows per section."""
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


def nodes_import(
    *,
    actor: str,
    nodes: list[Any],
    clusters: list[Any] | None = None,
    progress: Progress | None = None,
    batch_size: int = 2000,
) -> ImportResult:
    """Create or update many nodes (and optionally clusters) at once: all or nothing.

    Nodes are matched by (cluster, name). The fields present in the input are written; a field
    that other rows have but a row lacks takes its default. Raises :class:`InventoryError` with
    errors keyed by section (``nodes``, ``clusters``) and row index; then nothing is written.
    """
    report = progress or (lambda stage, done, total: None)
    total = len(nodes)
    cluster_rows, cluster_errors = _validate_cluster_rows(clusters or [])

    clean_rows: list[dict[str, Any]] = []
    node_errors: dict[int, dict[str, list[str]]] = {}
    present: set[str] = set()
    for index, row in enumerate(nodes):
        clean, errors = validate_node_row(row)
        if errors:
            node_errors[index] = errors
        clean_rows.append(clean)
        present.update(clean)
        if index % 5000 == 4999:
            report("validate", index + 1, total)
    report("validate", total, total)

    with transaction.atomic():
        clusters_created = clusters_updated = 0
        if cluster_rows and not cluster_errors:
            for c in cluster_rows:
                _, was_created = Cluster.objects.update_or_create(name=c["name"], defaults=c)
                clusters_created += was_created
                clusters_updated += not was_created
        names = {row["cluster"] for row in clean_rows if "cluster" in row}
        known = {
            name: (pk, plan)
            for pk, name, plan in Cluster.objects.filter(name__in=names).values_list("id", "name", "plan")
        }
        seen: dict[tuple[str, str], int] = {}
        for index, row in enumerate(clean_rows):
            if "cluster" in row and row["cluster"] not in known:
                node_errors.setdefault(index, {}).setdefault("cluster", []).append(
                    f"no cluster named {row['cluster']!r}"
                )
            key = (row.get("cluster"), row.get("name"))
            if None not in key:
                if key in seen:
                    node_errors.setdefault(index, {}).setdefault("name", []).append(
                        f"node {key[1]} of cluster {key[0]} is already at index {seen[key]}"
                    )
                else:
                    seen[key] = index
        if node_errors or cluster_errors:
            raise _reject({"nodes": node_errors, "clusters": cluster_errors})

        cluster_ids = [pk for pk, _ in known.values()]
        missing_facts = [f for f in FACT_FIELDS if f not in present]
        existing_nodes: dict[tuple[int, str], dict[str, Any]] = {}
        for values in Node.objects.filter(cluster_id__in=cluster_ids).values("cluster_id", "name", *missing_facts):
            existing_nodes[(values.pop("cluster_id"), values.pop("name"))] = values

        now = timezone.now()
        written_fields = [f for f in NORMALIZERS if f in present and f != "name"]
        objects: list[Node] = []
        created = 0
        for row in clean_rows:
            cluster_id, plan = known[row["cluster"]]
            values = {f: row.get(f, DEFAULTS[f]) for f in written_fields}
            previous = existing_nodes.get((cluster_id, row["name"]))
            if previous is None:
                created += 1
                facts_source = {**values}
            else:
                facts_source = {**previous, **values}
            values.update(decision_columns(facts_source, plan))
            objects.append(Node(cluster_id=cluster_id, name=row["name"], created_at=now, updated_at=now, **values))

        update_fields = [*written_fields, *DECISION_COLUMNS, "updated_at"]
        for start in range(0, len(objects), batch_size):
            Node.objects.bulk_create(
                objects[start : start + batch_size],
                update_conflicts=True,
                unique_fields=["cluster", "name"],
                update_fields=update_fields,
            )
            report("write", min(start + batch_size, total), total)
        result = ImportResult(created, total - created, clusters_created, clusters_updated)
        event_record(
            actor=actor,
            verb="import",
            object_type="node",
            object_repr=f"{total} nodes",
            after={
                "created": result.created,
                "updated": result.updated,
                "clusters": sorted(known),
                "clusters_created": clusters_created,
                "clusters_updated": clusters_updated,
            },
        )
    return result
