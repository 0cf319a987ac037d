"""Keeping an operation's lease while its step runs.

A worker holds an operation for one step at a time, with a lease of
``PIDNS_OPERATION_LEASE_SECONDS``. Most steps take milliseconds; one that waits on a slow engine
(each call has its own timeout, ``PIDNS_DRIVER_TIMEOUT``) may take longer than the lease. The
keeper, one thread per worker process, renews the leases of the steps still running here every
third of a lease, so the lease can stay short: a worker that dies stops renewing, and its steps are
taken over (by the reconciler) a lease later, not after the longest a step could take.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from .models import NodeOperation, OperationState

log = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[int, tuple[str, float]] = {}  # operation id -> (worker, last renewed)
        self._thread: threading.Thread | None = None
        self._pid = 0

    @contextmanager
    def holding(self, operation_id: int, worker: str) -> Iterator[None]:
        """Renew the operation's lease for as long as the block runs."""
        with self._lock:
            self._held[operation_id] = (worker, time.monotonic())
            self._start()
        try:
            yield
        finally:
            with self._lock:
                self._held.pop(operation_id, None)

    def held(self) -> list[int]:
        with self._lock:
            return list(self._held)

    def _start(self) -> None:
        # A forked process (a prefork pool's child) inherits no running thread: start its own.
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="operation-leases", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            lease = float(settings.PIDNS_OPERATION_LEASE_SECONDS)
            time.sleep(max(0.05, min(1.0, lease / 6)))
            now = time.monotonic()
            with self._lock:
                due = [(op, worker) for op, (worker, renewed) in self._held.items() if now - renewed >= lease / 3]
            if not due:
                continue
            try:
                for operation_id, worker in due:
                    kept = NodeOperation.objects.filter(
                        pk=operation_id, state=OperationState.RUNNING, lease_owner=worker[:200]
                    ).update(lease_until=timezone.now() + timedelta(seconds=lease))
                    with self._lock:
                        if operation_id in self._held:
                            self._held[operation_id] = (worker, now)
                    if not kept:
                        log.warning("operation %s: its lease was taken over while its step ran", operation_id)
            except Exception as exc:  # the database away: the next round tries again
                log.warning("renewing operation leases failed: %s", type(exc).__name__)
            finally:
                connection.close()  # renewals are rare (long steps only): no connection kept open


lease_keeper = LeaseKeeper()
