"""Audit the fleet (or one cluster) now, in this process, with a progress line."""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from core.commands import refuse_hostile
from core.progress import ProgressLine
from nodes import audits
from nodes.models import Cluster


class Command(BaseCommand):
    help = "Read every node's facts and PID-namespace mode through its Docker engine, and record drift."

    def add_arguments(self, parser):
        parser.add_argument("--cluster", help="only this cluster")
        parser.add_argument("--concurrency", type=int, help="nodes read at once (default PIDNS_AUDIT_CONCURRENCY)")
        parser.add_argument("--quiet", action="store_true", help="no progress line")

    def handle(self, *args, cluster, concurrency, quiet, **options):
        refuse_hostile({"cluster": cluster})
        target = None
        if cluster:
            target = Cluster.objects.filter(name=cluster).first()
            if target is None:
                raise CommandError(f"no cluster named {cluster!r}")
        if concurrency is not None and not 1 <= concurrency <= 500:
            raise CommandError("--concurrency must be between 1 and 500")
        try:
            with transaction.atomic():
                audit = audits.audit_create(actor="command:audit", cluster=target, concurrency=concurrency)
        except audits.AuditConflict as exc:
            raise CommandError(f"{exc}; wait for it to finish") from None
        line = None if quiet else ProgressLine(getattr(self.stderr, "_out", self.stderr), f"audit {audit.pk}")

        def progress(current):
            if line:
                line.show(f"{current.done}/{current.total} nodes, {current.failed} failed, {current.drifted} drifted")

        result = audits.audit_execute(audit_id=audit.pk, progress=progress)
        if line:
            line.close()
        self.stdout.write(
            f"audit {result.pk} {result.status}: {result.done} nodes read, {result.failed} failed, "
            f"{result.drifted} drifted, {result.skipped} skipped (busy in another audit)"
        )
