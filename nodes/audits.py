"""Audits: read the nodes themselves, record what was seen, and flag drift.

``audit_create`` queues an audit (refusing one that would overlap an active audit);
``audit_execute`` runs it: it claims the audit and a lease on each node, reads the nodes through
the driver with bounded concurrency (threads do only the I/O), and writes observations and node
updates in batches from one thread. It is safe to run twice: the claim is a conditional update,
and a resumed audit skips the nodes it already observed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from core.events import event_record
from drivers.base import Driver, DriverError, Endpoint, ErrorCode, ObservedFacts
from drivers.docker_engine import DockerEngineDriver
from drivers.dropin import MANAGED_FLAGS

from .decisions import decision_columns
from .drift import detect_drift
from .models import AUDIT_ACTIVE_STATES, NODE_OBSERVED_FIELDS, Audit, AuditStatus, Cluster, Node, NodeObservation

log = logging.getLogger(__name__)

Progress = Callable[[Audit], None]
UNREACHABLE_CODES = (
    ErrorCode.UNREACHABLE,
    ErrorCode.TIMEOUT,
    ErrorCode.TLS,
    ErrorCode.TLS_REQUIRED,
    ErrorCode.NO_ENDPOINT,
)
NODE_AUDIT_FIELDS = (
    "kubelet_version",
    "runtime_version",
    "docker_api_version",
    "kubelet_flags",
    "pause_image",
    *NODE_OBSERVED_FIELDS,
)


class AuditConflict(Exception):
    """An active audit already covers some of these nodes."""

    def __init__(self, audit: Audit):
        self.audit = audit
        super().__init__(f"audit {audit.pk} is already {audit.status} for these nodes")


def default_driver() -> Driver:
    return DockerEngineDriver(poll_interval=settings.PIDNS_VERIFY_POLL)


def endpoint_for(node: Node) -> Endpoint:
    """How to reach a node: its endpoint, and its (or its cluster's) TLS credentials."""
    credential = node.docker_credential or node.cluster.docker_credential
    return Endpoint(
        url=node.docker_endpoint,
        tls_ca=credential.ca_cert if credential else "",
        tls_cert=credential.client_cert if credential else "",
        tls_key=credential.client_key if credential else "",
        insecure=node.docker_insecure,
        timeout=settings.PIDNS_DRIVER_TIMEOUT,
        kubelet_dir=settings.PIDNS_KUBELET_DIR,
    )


def audit_nodes(audit: Audit):
    nodes = Node.objects.exclude(docker_endpoint="")
    return nodes.filter(cluster_id=audit.cluster_id) if audit.cluster_id else nodes


@transaction.atomic
def audit_create(*, actor: str, cluster: Cluster | None = None, concurrency: int | None = None) -> Audit:
    """Queue an audit of the fleet or of one cluster. Raises AuditConflict when an active audit
    already covers these nodes. The caller enqueues ``audit_run`` after commit."""
    # Serialise creations so two requests cannot both see "no active audit".
    list(Cluster.objects.select_for_update().filter(pk=cluster.pk) if cluster else Cluster.objects.none())
    active = Audit.objects.filter(status__in=AUDIT_ACTIVE_STATES)
    if cluster is not None:
        active = active.filter(Q(cluster__isnull=True) | Q(cluster=cluster))
    existing = active.order_by("created_at").first()
    if existing is not None:
        raise AuditConflict(existing)
    audit = Audit.objects.create(
        requested_by=actor, cluster=cluster, concurrency=concurrency or settings.PIDNS_AUDIT_CONCURRENCY
    )
    event_record(
        actor=actor,
        verb="create",
        object_type="audit",
        object_id=audit.pk,
        object_repr=f"audit of {cluster.name if cluster else 'the fleet'}",
        after={"cluster": cluster.name if cluster else None, "concurrency": audit.concurrency},
    )
    return audit


@dataclass
class _Result:
    node: Node
    facts: ObservedFacts | None
    error: DriverError | None
    duration_ms: int


def _observe(driver: Driver, node: Node) -> _Result:
    started = time.monotonic()
    try:
        facts = driver.facts(endpoint_for(node))
        return _Result(node, facts, None, int((time.monotonic() - started) * 1000))
    except DriverError as exc:
        return _Result(node, None, exc, int((time.monotonic() - started) * 1000))
    except Exception as exc:  # a driver bug must become a node error, not a lost audit
        log.exception("driver failed on node %s", node.pk)
        error = DriverError(ErrorCode.ENGINE_ERROR, f"unexpected driver error: {type(exc).__name__}: {exc}")
        return _Result(node, None, error, int((time.monotonic() - started) * 1000))


def _apply_result(result: _Result, now) -> NodeObservation:
    """Update the node in memory from one result and build its observation."""
    node = result.node
    expected = node.facts()
    if result.facts is not None:
        observed = result.facts.as_dict()
        other_flags = {k: v for k, v in (node.kubelet_flags or {}).items() if k not in MANAGED_FLAGS}
        node.kubelet_version = observed["kubelet_version"] or node.kubelet_version
        node.runtime_version = observed["runtime_version"]
        node.docker_api_version = observed["docker_api_version"]
        node.kubelet_flags = {**other_flags, **observed["kubelet_flags"]}
        node.pause_image = observed["pause_image"] or node.pause_image
        node.observed_pid_namespace = observed["observed_pid_namespace"]
        node.reachable = True
        node.audit_error = node.audit_error_code = ""
        columns = decision_columns(node.facts(), node.cluster.plan)
        for column, value in columns.items():
            setattr(node, column, value)
        node.drift_details = detect_drift(expected, observed, columns["pid_namespace"])
        node.drift = bool(node.drift_details)
    else:
        error = result.error
        observed = dict(error.facts)
        node.reachable = error.code not in UNREACHABLE_CODES
        node.audit_error = error.message[:2000]
        node.audit_error_code = error.code
        node.observed_pid_namespace = "unknown"
        if error.facts.get("runtime_version"):
            node.runtime_version = error.facts["runtime_version"]
            node.docker_api_version = error.facts.get("docker_api_version", "")
            for column, value in decision_columns(node.facts(), node.cluster.plan).items():
                setattr(node, column, value)
        node.drift_details = []
        node.drift = False
    node.last_audit_at = now
    return NodeObservation(
        node=node,
        observed_at=now,
        reachable=bool(node.reachable),
        error_code=result.error.code if result.error else "",
        error=result.error.message[:2000] if result.error else "",
        facts=observed,
        observed_pid_namespace=node.observed_pid_namespace,
        drift=node.drift,
        drift_details=node.drift_details,
        duration_ms=result.duration_ms,
    )


def node_record(*, node: Node, facts: ObservedFacts | None = None, error: DriverError | None = None) -> NodeObservation:
    """Record what was just read from one node outside an audit (a rollout's preflight)."""
    from .decisions import DECISION_COLUMNS

    observation = _apply_result(_Result(node, facts, error, 0), timezone.now())
    with transaction.atomic():
        observation.save()
        node.save(update_fields=[*NODE_AUDIT_FIELDS, *DECISION_COLUMNS])
    return observation


def _record(audit: Audit, batch: list[_Result]) -> None:
    now = timezone.now()
    observations = [_apply_result(r, now) for r in batch]
    for observation in observations:
        observation.audit = audit
    nodes = [r.node for r in batch]
    from .decisions import DECISION_COLUMNS

    with transaction.atomic():
        NodeObservation.objects.bulk_create(observations, ignore_conflicts=True)
        Node.objects.bulk_update(nodes, [*NODE_AUDIT_FIELDS, *DECISION_COLUMNS], batch_size=500)
        Audit.objects.filter(pk=audit.pk).update(
            done=F("done") + len(batch),
            failed=F("failed") + sum(1 for r in batch if r.error is not None),
            drifted=F("drifted") + sum(1 for n in nodes if n.drift),
            heartbeat_at=now,
        )
        Node.objects.filter(audit_lease=audit).update(
            audit_lease_until=now + timedelta(seconds=settings.PIDNS_AUDIT_LEASE_SECONDS)
        )


def _claim(audit_id: int) -> Audit | None:
    now = timezone.now()
    claimed = Audit.objects.filter(pk=audit_id, status=AuditStatus.QUEUED).update(
        status=AuditStatus.RUNNING,
        started_at=Coalesce(F("started_at"), now),
        heartbeat_at=now,
        attempts=F("attempts") + 1,
    )
    return Audit.objects.select_related("cluster").get(pk=audit_id) if claimed else None


def _claim_nodes(audit: Audit) -> tuple[list[Node], int, int]:
    """Lease the audit's nodes that no other running audit holds. Returns (nodes, already
    observed by this audit, skipped because another audit holds them)."""
    now = timezone.now()
    observed = NodeObservation.objects.filter(audit=audit).values("node_id")
    candidates = audit_nodes(audit).exclude(pk__in=observed)
    free = Q(audit_lease__isnull=True) | Q(audit_lease=audit) | Q(audit_lease_until__lt=now)
    Node.objects.filter(pk__in=candidates.values("pk")).filter(free).update(
        audit_lease=audit, audit_lease_until=now + timedelta(seconds=settings.PIDNS_AUDIT_LEASE_SECONDS)
    )
    nodes = list(
        Node.objects.filter(audit_lease=audit)
        .exclude(pk__in=observed)
        .select_related("cluster", "docker_credential", "cluster__docker_credential")
    )
    already = NodeObservation.objects.filter(audit=audit).count()
    skipped = candidates.count() - len(nodes)
    return nodes, already, skipped


def audit_execute(*, audit_id: int, driver: Driver | None = None, progress: Progress | None = None) -> Audit | None:
    """Run a queued audit to the end. Returns None when the audit is not queued (another worker
    has it, or it is finished): running it twice is harmless."""
    audit = _claim(audit_id)
    if audit is None:
        return None
    driver = driver or default_driver()
    try:
        nodes, already, skipped = _claim_nodes(audit)
        Audit.objects.filter(pk=audit.pk).update(total=already + len(nodes), skipped=skipped)
        batch: list[_Result] = []
        last_flush = time.monotonic()
        with ThreadPoolExecutor(max_workers=max(1, min(audit.concurrency, 500)), thread_name_prefix="audit") as pool:
            futures = [pool.submit(_observe, driver, node) for node in nodes]
            for future in as_completed(futures):
                batch.append(future.result())
                if len(batch) >= 500 or time.monotonic() - last_flush > 0.5:
                    _record(audit, batch)
                    batch, last_flush = [], time.monotonic()
                    if progress:
                        audit.refresh_from_db()
                        progress(audit)
        if batch:
            _record(audit, batch)
        Audit.objects.filter(pk=audit.pk, status=AuditStatus.RUNNING).update(
            status=AuditStatus.SUCCEEDED, finished_at=timezone.now()
        )
    except Exception as exc:
        Audit.objects.filter(pk=audit.pk).update(
            status=AuditStatus.FAILED, finished_at=timezone.now(), error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        raise
    finally:
        Node.objects.filter(audit_lease=audit).update(audit_lease=None, audit_lease_until=None)
    audit.refresh_from_db()
    if progress:
        progress(audit)
    event_record(
        actor="task:audit_run",
        verb="finish",
        object_type="audit",
        object_id=audit.pk,
        object_repr=str(audit),
        after={
            "status": audit.status,
            "total": audit.total,
            "done": audit.done,
            "failed": audit.failed,
            "drifted": audit.drifted,
            "skipped": audit.skipped,
        },
    )
    return audit


def audit_requeue(*, audit: Audit, reason: str) -> bool:
    """Put a running audit back in the queue (its worker is gone). Returns whether it was."""
    updated = Audit.objects.filter(pk=audit.pk, status=AuditStatus.RUNNING, heartbeat_at=audit.heartbeat_at).update(
        status=AuditStatus.QUEUED, error=reason[:2000]
    )
    if updated:
        event_record(
            actor="task:reconcile",
            verb="requeue",
            object_type="audit",
            object_id=audit.pk,
            object_repr=str(audit),
            after={"reason": reason},
        )
    return bool(updated)


def audits_stale(*, older_than: float) -> list[Audit]:
    """Audits whose worker stopped reporting, and queued audits nobody picked up."""
    cutoff = timezone.now() - timedelta(seconds=older_than)
    return list(
        Audit.objects.filter(
            Q(status=AuditStatus.RUNNING, heartbeat_at__lt=cutoff) | Q(status=AuditStatus.QUEUED, created_at__lt=cutoff)
        )
    )
