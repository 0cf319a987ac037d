"""Audits: read the nodes themselves, record what was seen, and flag drift.

``audit_create`` queues an audit (refusing one that would overlap an active audit);
``audit_execute`` runs it: it claims the audit and a lease on each node, reads the nodes through
the driver with bounded concurrency (threads do only the I/O), and writes observations and node
updates in batches from one thread. It is safe to run twice: every transition is a conditional
update on the audit's state (:data:`nodes.states.AUDIT`), and a resumed audit skips the nodes it
already observed. It enforces its own time limit (``PIDNS_AUDIT_TIME_LIMIT``) whatever the worker
pool: past it, what was read is kept and the audit is queued again to resume, or ends
``timed-out`` after ``PIDNS_AUDIT_MAX_ATTEMPTS`` tries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from concurrent.futures import TimeoutError as FuturesTimeout
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from core import webhooks
from core.events import event_record
from core.exceptions import Conflict
from core.models import AuditEvent
from drivers.base import Driver, DriverError, ErrorCode
from drivers.fanout import ProcessFanOut, can_fork_processes
from drivers.fanout import as_error as fanout_error

from .access import default_driver, endpoint_for
from .models import AUDIT_ACTIVE_STATES, Audit, AuditStatus, Cluster, Node, NodeObservation, ObservedVia
from .observations import READING_FIELDS, Reading, apply_reading
from .states import AUDIT

log = logging.getLogger(__name__)

Progress = Callable[[Audit], None]


class AuditConflict(Conflict):
    """An active audit already covers some of these nodes."""

    def __init__(self, audit: Audit):
        self.audit = audit
        super().__init__(f"audit {audit.pk} is already {audit.status} for these nodes")

    def payload(self, request=None) -> dict:
        from rest_framework.reverse import reverse

        return {"detail": str(self), "audit": reverse("audit-detail", args=[self.audit.pk], request=request)}


def audit_nodes(audit: Audit):
    nodes = Node.objects.exclude(docker_endpoint="")
    return nodes.filter(cluster_id=audit.cluster_id) if audit.cluster_id else nodes


@transaction.atomic
def audit_create(*, actor: str, cluster: Cluster | None = None, concurrency: int | None = None) -> Audit:
    """Queue an audit of the fleet or of one cluster. Raises AuditConflict when an active audit
    already covers these nodes. The caller enqueues ``audit_run`` after commit."""
    # Serialise creations so two requests cannot both see "no active audit".
    list(Cluster.objects.select_for_update().filter(**({"pk": cluster.pk} if cluster else {})).values_list("pk"))
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


def _observe(driver: Driver, node: Node) -> Reading:
    started = time.monotonic()
    try:
        return Reading(node, facts=driver.facts(endpoint_for(node)), duration_ms=_ms(started))
    except DriverError as exc:
        return Reading(node, error=exc, duration_ms=_ms(started))
    except Exception as exc:  # a driver bug must become a node error, not a lost audit
        log.exception("driver failed on node %s", node.pk)
        error = DriverError(ErrorCode.ENGINE_ERROR, f"unexpected driver error: {type(exc).__name__}: {exc}")
        return Reading(node, error=error, duration_ms=_ms(started))


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _drift_events(audit: Audit, batch: list[Reading], before: dict[int, tuple[bool, list]]) -> list[AuditEvent]:
    """The audit log's record of what this batch found: a node that began to drift (or drifts
    differently), and a node whose drift is gone. A node that drifts as it did is not repeated."""
    events = []
    for reading in batch:
        node = reading.node
        was_drifting, was_details = before[node.pk]
        if node.drift and (not was_drifting or node.drift_details != was_details):
            verb, after = "drift-found", {"drift": node.drift_details[:20], "audit": audit.pk, "node_id": node.pk}
        elif was_drifting and not node.drift and reading.error is None:
            verb, after = "drift-cleared", {"audit": audit.pk, "node_id": node.pk}
        else:
            continue
        events.append(
            AuditEvent(
                actor=f"task:audit:{audit.pk}",
                verb=verb,
                object_type="node",
                object_id=str(node.pk),
                object_repr=f"{node.cluster.name}/{node.name}"[:300],
                before={"drift": was_details[:20]} if was_drifting else None,
                after=after,
            )
        )
    return events


def _record(audit: Audit, batch: list[Reading]) -> None:
    now = timezone.now()
    before = {r.node.pk: (r.node.drift, list(r.node.drift_details or [])) for r in batch}
    observations = [apply_reading(r, via=ObservedVia.AUDIT, now=now) for r in batch]
    events = _drift_events(audit, batch, before)
    for observation in observations:
        observation.audit = audit
    nodes = [r.node for r in batch]
    for node in nodes:
        node.last_audit_at = now
    with transaction.atomic():
        NodeObservation.objects.bulk_create(observations, ignore_conflicts=True)
        Node.objects.bulk_update(nodes, [*READING_FIELDS, "last_audit_at"], batch_size=500)
        AuditEvent.objects.bulk_create(events)
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
    claimed = AUDIT.apply(
        Audit.objects.filter(pk=audit_id),
        "claim",
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


class TimeLimitReached(Exception):
    """The audit's own time limit passed; what was read is kept."""


def audit_execute(
    *,
    audit_id: int,
    driver: Driver | None = None,
    progress: Progress | None = None,
    time_limit: float | None = None,
) -> Audit | None:
    """Run a queued audit to the end, or to its time limit. Returns None when the audit is not
    queued (another worker has it, or it is finished): running it twice is harmless.

    Past the time limit the audit goes back to the queue (the caller sends it again) or, on its last
    attempt, ends ``timed-out``; the nodes read so far stay recorded either way.
    """
    audit = _claim(audit_id)
    if audit is None:
        return None
    driver = driver or default_driver()
    limit = settings.PIDNS_AUDIT_TIME_LIMIT if time_limit is None else time_limit
    deadline = time.monotonic() + limit
    try:
        nodes, already, skipped = _claim_nodes(audit)
        Audit.objects.filter(pk=audit.pk).update(total=already + len(nodes), skipped=skipped)
        _read_all(audit, driver, nodes, deadline, progress)
        AUDIT.apply(Audit.objects.filter(pk=audit.pk), "succeed", finished_at=timezone.now(), error="")
    except TimeLimitReached:
        audit_out_of_time(audit=audit, reason=f"the time limit of {limit:g}s was reached")
    except Exception as exc:
        _fail(audit, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        Node.objects.filter(audit_lease=audit).update(audit_lease=None, audit_lease_until=None)
    audit.refresh_from_db()
    if progress:
        progress(audit)
    if audit.status in (AuditStatus.SUCCEEDED, AuditStatus.TIMED_OUT) and audit.drifted:
        drifting = NodeObservation.objects.filter(audit=audit, drift=True).order_by("node__name")
        names = list(drifting.values_list("node__cluster__name", "node__name")[:20])
        webhooks.notify(
            "drift-found",
            f"audit #{audit.pk} of {audit.cluster.name if audit.cluster_id else 'the fleet'}",
            {
                "audit": audit.pk,
                "drifted": audit.drifted,
                "summary": f"{audit.drifted} of {audit.done} nodes drift from what the service wants",
                "nodes": [f"{cluster}/{name}" for cluster, name in names],
                **webhooks.link(f"/audits/{audit.pk}/"),
            },
        )
    if audit.status in (AuditStatus.SUCCEEDED, AuditStatus.TIMED_OUT):
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


def _read_all(audit: Audit, driver: Driver, nodes: list[Node], deadline: float, progress: Progress | None) -> None:
    """Read every node and record the readings in batches (every 500, or every half second)."""
    batch: list[Reading] = []
    last_flush = time.monotonic()
    readings = _readings(audit, driver, nodes)
    try:
        for reading in readings.results(timeout=max(0.0, deadline - time.monotonic())):
            batch.append(reading)
            if len(batch) >= 500 or time.monotonic() - last_flush > 0.5:
                _record(audit, batch)
                batch, last_flush = [], time.monotonic()
                if progress:
                    audit.refresh_from_db()
                    progress(audit)
    except TimeoutError:
        # Keep what has been read; the nodes still being read are read again on resume.
        batch += readings.finished()
        raise TimeLimitReached from None
    finally:
        readings.close()
        if batch:
            _record(audit, _unrecorded(audit, batch))


class _ThreadReadings:
    """Nodes read by threads of this process: ``concurrency`` at once."""

    def __init__(self, audit: Audit, driver: Driver, nodes: list[Node]):
        self._pool = ThreadPoolExecutor(max_workers=max(1, min(audit.concurrency, 500)), thread_name_prefix="audit")
        self._futures = [self._pool.submit(_observe, driver, node) for node in nodes]

    def results(self, timeout: float):
        try:
            for future in as_completed(self._futures, timeout=timeout):
                yield future.result()
        except FuturesTimeout:
            raise TimeoutError from None

    def finished(self) -> list[Reading]:
        return [f.result() for f in self._futures if f.done() and not f.cancelled()]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class _ProcessReadings:
    """Nodes read by ``PIDNS_AUDIT_PROCESSES`` processes (threads in each), for large audits: the
    reading is then not bound by this process's interpreter lock. Results are recorded here."""

    def __init__(self, audit: Audit, nodes: list[Node]):
        self._nodes = {node.pk: node for node in nodes}
        endpoints = [(node.pk, endpoint_for(node)) for node in nodes]
        self._fanout = ProcessFanOut(
            endpoints, processes=settings.PIDNS_AUDIT_PROCESSES, concurrency=max(1, min(audit.concurrency, 500))
        )

    def results(self, timeout: float):
        for node_id, facts, duration_ms in self._fanout.results(timeout):
            node = self._nodes[node_id]
            if isinstance(facts, tuple):
                yield Reading(node, error=fanout_error(facts), duration_ms=duration_ms)
            else:
                yield Reading(node, facts=facts, duration_ms=duration_ms)

    def finished(self) -> list[Reading]:
        return []  # results come back a chunk at a time; those not yet back are read again on resume

    def close(self) -> None:
        self._fanout.close()


def _readings(audit: Audit, driver: Driver, nodes: list[Node]):
    """Threads in this process, or, for an audit of at least ``PIDNS_AUDIT_PROCESS_MIN_NODES``
    nodes read by the default driver, several processes (not from a process that may not start
    any, such as a prefork pool's child)."""
    if (
        settings.PIDNS_AUDIT_PROCESSES > 1
        and len(nodes) >= settings.PIDNS_AUDIT_PROCESS_MIN_NODES
        and driver is default_driver()
        and can_fork_processes()
    ):
        return _ProcessReadings(audit, nodes)
    return _ThreadReadings(audit, driver, nodes)


def _unrecorded(audit: Audit, batch: list[Reading]) -> list[Reading]:
    seen = set(NodeObservation.objects.filter(audit=audit).values_list("node_id", flat=True))
    unique = {r.node.pk: r for r in batch if r.node.pk not in seen}
    return list(unique.values())


def _fail(audit: Audit, error: str) -> None:
    """The audit itself broke: guarded (only a running audit fails), and written to the audit log."""
    if AUDIT.apply(Audit.objects.filter(pk=audit.pk), "fail", finished_at=timezone.now(), error=error[:2000]):
        event_record(
            actor="task:audit_run",
            verb="fail",
            object_type="audit",
            object_id=audit.pk,
            object_repr=str(audit),
            after={"status": AuditStatus.FAILED, "error": error[:500]},
        )


def audit_out_of_time(*, audit: Audit, reason: str) -> str | None:
    """A running audit ran out of time: queued again to resume (the caller sends it), or
    ``timed-out`` on its last attempt. Returns the new status, or None if it was not running."""
    audit.refresh_from_db(fields=["attempts", "done", "total", "heartbeat_at"])
    if audit.attempts < settings.PIDNS_AUDIT_MAX_ATTEMPTS:
        reason = f"{reason} after {audit.done} of {audit.total} nodes; resuming"
        return AuditStatus.QUEUED if audit_requeue(audit=audit, reason=reason, actor="task:audit_run") else None
    error = f"{reason} on each of {audit.attempts} attempts ({audit.done} of {audit.total} nodes read)"
    if not AUDIT.apply(Audit.objects.filter(pk=audit.pk), "time-out", finished_at=timezone.now(), error=error):
        return None
    return AuditStatus.TIMED_OUT


def audit_requeue(*, audit: Audit, reason: str, actor: str = "task:reconcile") -> bool:
    """Put a running audit back in the queue (its worker is gone, or its time ran out). Guarded by
    the heartbeat the caller saw, so a live worker's audit is not taken. Returns whether it was."""
    updated = AUDIT.apply(
        Audit.objects.filter(pk=audit.pk, heartbeat_at=audit.heartbeat_at), "requeue", error=reason[:2000]
    )
    if updated:
        event_record(
            actor=actor,
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
