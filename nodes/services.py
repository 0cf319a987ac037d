"""Writes to the inventory. Every change keeps the decision columns and drift in step and is
audited.

Inventory writes may set a node's desired state (``desired_flags``, ``desired_gates``) and may
report its facts (versions, ``kubelet_flags``, pause image) for nodes the service cannot read
itself: reported facts are observed facts with ``observed_via="inventory"``. Reported flags become
the desired ones unless the write sets the desired state too. Rollout operations set the desired
state through :func:`node_desire`; readings never do (:mod:`nodes.observations`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.db.models import ProtectedError
from django.utils import timezone

from core.events import event_record
from core.exceptions import Conflict, DomainError
from drivers.dropin import Desired, overrides_for, split_gates

from .decisions import DECISION_COLUMNS, decision_columns
from .models import NODE_DESIRED_FIELDS, Cluster, DockerCredential, Node, ObservedVia
from .observations import refresh_drift
from .validation import FACT_FIELDS

NODE_SNAPSHOT_FIELDS = (
    "name",
    "labels",
    "docker_endpoint",
    "managed",
    "docker_insecure",
    *FACT_FIELDS,
    "docker_api_version",
    "desired_flags",
    "desired_gates",
)
CLUSTER_FIELDS = ("name", "plan", "description", "labels", "desired_gates")
# The cluster's Kubernetes API; the secrets among them are never written to an event.
KUBE_FIELDS = (
    "kube_api_server",
    "kube_ca_cert",
    "kube_token",
    "kube_client_cert",
    "kube_client_key",
    "kube_endpoint_template",
)
KUBE_SECRETS = ("kube_token", "kube_client_key")
MAX_REPORTED_ERRORS = 1000


class InventoryError(DomainError):
    """A change the inventory refuses; ``errors`` maps fields to messages."""


class InventoryConflict(Conflict, InventoryError):
    """A change that conflicts with what the inventory holds (a cluster that still has nodes)."""


def node_snapshot(node: Node) -> dict[str, Any]:
    data = {f: getattr(node, f) for f in NODE_SNAPSHOT_FIELDS}
    data["cluster"] = node.cluster.name
    data["docker_credential"] = node.docker_credential.name if node.docker_credential_id else None
    return data


def cluster_snapshot(cluster: Cluster) -> dict[str, Any]:
    data = {f: getattr(cluster, f) for f in CLUSTER_FIELDS}
    data["docker_credential"] = cluster.docker_credential.name if cluster.docker_credential_id else None
    data["kube_api_server"] = cluster.kube_api_server
    data["kube_endpoint_template"] = cluster.kube_endpoint_template
    data["kube_credentials"] = "set" if cluster.kube_token or cluster.kube_client_key else "none"
    return data


def _apply_decision(node: Node, plan: str) -> None:
    for column, value in decision_columns(node.facts(), plan).items():
        setattr(node, column, value)


def desired_from_write(values: Mapping[str, Any], cluster_gates: Mapping[str, bool] | None) -> dict[str, Any]:
    """The desired-state fields an inventory write sets: the ones it gives, else the managed part
    of the flags it reports (a node is held to the flags, and the gates, the inventory says it has;
    its gate settings are then what differs from its cluster's)."""
    if "desired_flags" in values or "desired_gates" in values:
        return {key: values[key] for key in ("desired_flags", "desired_gates") if key in values}
    if "kubelet_flags" in values:
        desired = Desired.of(values["kubelet_flags"] or {})
        return {"desired_flags": desired.flags, "desired_gates": overrides_for(cluster_gates, desired.gates)}
    return {}


def observed_gates_of(values: Mapping[str, Any]) -> dict[str, Any]:
    """Reported flags report the gates the kubelet is given, too."""
    if "kubelet_flags" not in values:
        return {}
    return {"observed_gates": split_gates(values["kubelet_flags"] or {})[1]}


def _stamp(node: Node, values: Mapping[str, Any], actor: str, now) -> None:
    """Mark what a write set: reported facts as observed by the inventory, a desired state as set by
    the actor."""
    if any(f in values for f in (*FACT_FIELDS, "docker_api_version")):
        node.observed_via, node.observed_at = ObservedVia.INVENTORY, now
    if "desired_flags" in values or "desired_gates" in values:
        node.desired_source, node.desired_at = actor[:200], now


# --- clusters ------------------------------------------------------------------------------------


@transaction.atomic
def cluster_create(
    *,
    actor: str,
    name: str,
    plan: str = "proposal",
    description: str = "",
    labels: dict | None = None,
    docker_credential: DockerCredential | None = None,
    desired_gates: dict | None = None,
    **kube: str,
) -> Cluster:
    """Create a cluster (with its Kubernetes API connection, ``kube_*``, if it has one)."""
    unknown = set(kube) - set(KUBE_FIELDS)
    if unknown:
        raise InventoryError({name: ["unknown field"] for name in sorted(unknown)})
    cluster = Cluster.objects.create(
        name=name,
        plan=plan,
        description=description,
        labels=labels or {},
        docker_credential=docker_credential,
        desired_gates=desired_gates or {},
        **kube,
    )
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
        if field_name not in (*CLUSTER_FIELDS, *KUBE_FIELDS, "docker_credential"):
            raise InventoryError({field_name: ["this field cannot be changed"]})
        setattr(cluster, field_name, value)
    cluster.save()
    if before["plan"] != cluster.plan or before["desired_gates"] != cluster.desired_gates:
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
        raise InventoryConflict(
            {"cluster": [f"cluster {cluster.name} still has nodes; delete or move them first"]}
        ) from None
    event_record(
        actor=actor, verb="delete", object_type="cluster", object_id=pk, object_repr=before["name"], before=before
    )


REFRESHED_FIELDS = (*DECISION_COLUMNS, "drift", "drift_details")


def cluster_refresh_decisions(*, cluster: Cluster, batch_size: int = 2000) -> int:
    """Recompute the stored decision columns and the drift (which depends on the plan and the
    cluster's desired gates) of a cluster's nodes. Returns how many changed."""
    changed: list[Node] = []
    count = 0
    fields = (
        "id",
        "cluster_id",
        *FACT_FIELDS,
        *REFRESHED_FIELDS,
        "observed_pid_namespace",
        "observed_via",
        "desired_flags",
        "desired_gates",
        "observed_gates",
    )
    for node in Node.objects.filter(cluster=cluster).only(*fields).iterator(chunk_size=batch_size):
        node.cluster = cluster
        before = [getattr(node, c) for c in REFRESHED_FIELDS]
        _apply_decision(node, cluster.plan)
        refresh_drift(node)
        if [getattr(node, c) for c in REFRESHED_FIELDS] != before:
            changed.append(node)
        if len(changed) >= batch_size:
            count += len(changed)
            Node.objects.bulk_update(changed, REFRESHED_FIELDS)
            changed = []
    if changed:
        count += len(changed)
        Node.objects.bulk_update(changed, REFRESHED_FIELDS)
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
        raise InventoryConflict({"credential": [f"credential {credential.name} is in use"]}) from None
    event_record(
        actor=actor, verb="delete", object_type="credential", object_id=pk, object_repr=before["name"], before=before
    )


# --- nodes ---------------------------------------------------------------------------------------


@transaction.atomic
def node_create(*, actor: str, cluster: Cluster, name: str, **values: Any) -> Node:
    """Create a node with its decision columns and drift filled."""
    values = {**values, **desired_from_write(values, cluster.desired_gates), **observed_gates_of(values)}
    node = Node(cluster=cluster, name=name, **values)
    _stamp(node, values, actor, timezone.now())
    _apply_decision(node, cluster.plan)
    refresh_drift(node)
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
    """Change a node; facts or a move to another cluster re-decide it, a new desired state or new
    facts re-measure its drift."""
    before = node_snapshot(node)
    for field_name in changes:
        if field_name not in (*NODE_SNAPSHOT_FIELDS, "cluster", "docker_credential"):
            raise InventoryError({field_name: ["this field cannot be changed"]})
    cluster = changes.get("cluster", node.cluster)
    changes = {**changes, **desired_from_write(changes, cluster.desired_gates), **observed_gates_of(changes)}
    for field_name, value in changes.items():
        setattr(node, field_name, value)
    _stamp(node, changes, actor, timezone.now())
    _apply_decision(node, node.cluster.plan)
    refresh_drift(node)
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


def node_desire(*, node: Node, desired: Desired, source: str) -> None:
    """Set what the service intends for a node (a rollout operation wrote it, or rolled it back),
    and re-measure its drift against the last reading."""
    if desired.flags is not None:
        node.desired_flags = dict(desired.flags)
    if desired.gates is not None:
        node.desired_gates = overrides_for(node.cluster.desired_gates, desired.gates)
    node.desired_source, node.desired_at = source[:200], timezone.now()
    refresh_drift(node)
    node.save(update_fields=[*NODE_DESIRED_FIELDS, "drift", "drift_details"])


@transaction.atomic
def node_adopt(*, actor: str, node: Node) -> Node:
    """Make what was last read on the node (its managed flags and its gates) what the service wants
    of it: the operator accepts a change made on the node. In the audit log; drift re-measured."""
    if node.observed_at is None:
        raise InventoryConflict({"node": ["nothing was read from this node yet: audit it first"]})
    before = {"desired_flags": node.desired_flags, "desired_gates": node.desired_gates, "drift": node.drift_details}
    flags, _ = split_gates(node.kubelet_flags or {})
    node_desire(
        node=node,
        desired=Desired(flags=flags, gates=dict(node.observed_gates or {})),
        source=f"adopted from the node by {actor}",
    )
    event_record(
        actor=actor,
        verb="adopt-observed",
        object_type="node",
        object_id=node.pk,
        object_repr=f"{node.cluster.name}/{node.name}",
        before=before,
        after={"desired_flags": node.desired_flags, "desired_gates": node.desired_gates, "drift": node.drift_details},
    )
    return node
