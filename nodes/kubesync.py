"""Cluster sync: the nodes a cluster's Kubernetes API lists, into the inventory.

A sync writes what the API shows (observed): kubelet and runtime versions, labels, Ready,
unschedulable, whether the node is still in the cluster, and its Docker endpoint (from the node's
``pidns.io/docker-endpoint`` annotation, else the cluster's template over its addresses). It never
writes desired settings. New nodes are created in bulk, changed ones updated in bulk, and a node
the API no longer lists is marked as having left (``in_cluster`` false), not deleted: its history
stays.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from core.events import event_record
from drivers.base import DriverError
from drivers.kube import DOCKER_ENDPOINT_ANNOTATION, KubeNode

from .access import kube_client
from .decisions import DECISION_COLUMNS, decision_columns
from .models import Cluster, ContainerRuntime, Node
from .validation import FieldValidator

RUNTIMES = {c.value for c in ContainerRuntime}
SYNCED_FIELDS = (
    "kubelet_version",
    "container_runtime",
    "runtime_version",
    "labels",
    "ready",
    "cordoned",
    "in_cluster",
    "left_cluster_at",
    "docker_endpoint",
)
BATCH = 500
MAX_VALUE_GROUPS = 50
# The facts the decision columns are derived from.
FACT_FIELDS = {"kubelet_version", "container_runtime", "runtime_version"}


class SyncError(Exception):
    """The cluster cannot be synced (no API, or the API refused); the message says why."""


@dataclass(frozen=True)
class SyncResult:
    listed: int
    created: int
    updated: int
    left: int

    def __str__(self) -> str:
        return f"{self.listed} nodes listed: {self.created} new, {self.updated} changed, {self.left} left the cluster"


def endpoint_of(node: KubeNode, template: str) -> str:
    """The node's Docker endpoint: its annotation, else the template over its addresses
    (``{InternalIP}``, ``{ExternalIP}``, ``{Hostname}``, ``{name}``); empty when neither gives one."""
    if node.annotations.get(DOCKER_ENDPOINT_ANNOTATION):
        return node.annotations[DOCKER_ENDPOINT_ANNOTATION]
    if not template:
        return ""
    values = {**node.addresses, "name": node.name}
    fields = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    if not fields <= set(values):
        return ""
    return template.format_map(values)


def _valid_endpoint(url: str) -> str:
    try:
        FieldValidator("docker_endpoint")(url)
    except Exception:  # a bad annotation is not this sync's failure: the node is kept without one
        return ""
    return url


def _observed(node: KubeNode, cluster: Cluster) -> dict:
    runtime = node.runtime if node.runtime in RUNTIMES else (node.runtime[:16] or ContainerRuntime.DOCKER)
    return {
        "kubelet_version": node.kubelet_version[:128],
        "container_runtime": runtime,
        "runtime_version": node.runtime_version[:128],
        "labels": node.labels,
        "ready": node.ready,
        "cordoned": node.unschedulable,
        "in_cluster": True,
        "left_cluster_at": None,
        "docker_endpoint": _valid_endpoint(endpoint_of(node, cluster.kube_endpoint_template)[:255]),
    }


def cluster_sync(
    *, actor: str, cluster: Cluster, page_size: int = 500, progress: Callable[[int], None] | None = None
) -> SyncResult:
    """List the cluster's nodes and bring the inventory in step. Raises :class:`SyncError`."""
    if not cluster.has_kube_api:
        raise SyncError(f"cluster {cluster.name} has no Kubernetes API (set kube_api_server)")
    existing = {node.name: node for node in Node.objects.filter(cluster=cluster)}
    seen: set[str] = set()
    created = updated = 0
    new_rows: list[Node] = []
    changed_rows: list[tuple[tuple[str, ...], Node]] = []
    try:
        for listed in kube_client(cluster).list_nodes(page_size=page_size):
            seen.add(listed.name)
            values = _observed(listed, cluster)
            node = existing.get(listed.name)
            if node is None:
                if not values["docker_endpoint"]:
                    values.pop("docker_endpoint")
                node = Node(cluster=cluster, name=listed.name[:253], **values)
                node.cluster = cluster
                _decide(node, cluster)
                new_rows.append(node)
            else:
                if not values["docker_endpoint"]:
                    values["docker_endpoint"] = node.docker_endpoint  # keep what an operator set
                changed = tuple(name for name, value in values.items() if getattr(node, name) != value)
                if changed:
                    for name in changed:
                        setattr(node, name, values[name])
                    if set(changed) & FACT_FIELDS:
                        _decide(node, cluster)
                        changed += DECISION_COLUMNS
                    changed_rows.append((changed, node))
            if progress and len(seen) % page_size == 0:
                progress(len(seen))
    except DriverError as exc:
        Cluster.objects.filter(pk=cluster.pk).update(kube_sync_error=exc.message[:2000])
        raise SyncError(exc.message) from None
    now = timezone.now()
    gone = [name for name, node in existing.items() if name not in seen and node.in_cluster is not False]
    with transaction.atomic():
        for start in range(0, len(new_rows), BATCH):
            Node.objects.bulk_create(new_rows[start : start + BATCH])
        created = len(new_rows)
        _write_changes(changed_rows, now)
        updated = len(changed_rows)
        left = Node.objects.filter(cluster=cluster, name__in=gone).update(
            in_cluster=False, left_cluster_at=now, ready=None, updated_at=now
        )
        Cluster.objects.filter(pk=cluster.pk).update(kube_synced_at=now, kube_sync_error="")
        result = SyncResult(listed=len(seen), created=created, updated=updated, left=left)
        event_record(
            actor=actor,
            verb="sync",
            object_type="cluster",
            object_id=cluster.pk,
            object_repr=cluster.name,
            after={
                "listed": result.listed,
                "created": created,
                "updated": updated,
                "left": left,
                "left_nodes": gone[:50],
            },
        )
    if progress:
        progress(len(seen))
    return result


def _write_changes(changed_rows: list[tuple[tuple[str, ...], Node]], now) -> None:
    """Write the changed nodes. Syncs mostly bring many nodes the same change (a cordon, a Ready
    flip, an upgrade): nodes that changed the same fields to the same values take one UPDATE per
    1,000; when the changes are too varied for that, one bulk update per set of changed fields."""
    same: dict[tuple[tuple[str, ...], str], list[Node]] = {}
    for changed, node in changed_rows:
        node.updated_at = now
        values = json.dumps([getattr(node, name) for name in changed], sort_keys=True, default=str)
        same.setdefault((changed, values), []).append(node)
    if len(same) <= MAX_VALUE_GROUPS:
        for (changed, _), rows in same.items():
            values = {name: getattr(rows[0], name) for name in changed}
            for start in range(0, len(rows), 1000):
                ids = [node.pk for node in rows[start : start + 1000]]
                Node.objects.filter(pk__in=ids).update(**values, updated_at=now)
        return
    by_fields: dict[tuple[str, ...], list[Node]] = {}
    for changed, node in changed_rows:
        by_fields.setdefault(changed, []).append(node)
    for changed, rows in by_fields.items():
        Node.objects.bulk_update(rows, [*changed, "updated_at"], batch_size=BATCH)


def _decide(node: Node, cluster: Cluster) -> None:
    for column, value in decision_columns(node.facts(), cluster.plan).items():
        setattr(node, column, value)
