"""Serialising work on one rollout without a hot row.

A full pass of the advancer (waves, soak, approval, the failure budget) runs alone per rollout; a
finishing operation that hands its slot to the next pending one runs beside other such hand-overs
but never beside a full pass. On PostgreSQL that is an advisory lock per rollout, exclusive for the
full pass and shared for hand-overs, held to the end of the transaction. On SQLite every write
transaction already runs alone (the database's write lock, taken at BEGIN IMMEDIATE).

:func:`status_for_write` reads the rollout's status with a share lock on its row: a transition of the
rollout (an abort, say) waits for the statements that read it this way, and they for it, so whether
an operation started before or after the abort is decided by commit order, not by chance.
"""

from __future__ import annotations

from django.db import connection

ADVISORY_NAMESPACE = 0x504944  # "PID": keeps these locks apart from any other advisory lock


def rollout_lock(rollout_id: int, *, exclusive: bool) -> None:
    """Take the rollout's lock until the end of the current transaction (call inside atomic())."""
    if connection.vendor != "postgresql":
        return
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {function}(%s, %s)", [ADVISORY_NAMESPACE, rollout_id])


def status_for_write(rollout_id: int, columns: tuple[str, ...] = ()) -> tuple | None:
    """``(status, *columns)`` of the rollout, read under a share lock on its row (PostgreSQL), or None."""
    from .models import Rollout

    table = Rollout._meta.db_table
    names = ", ".join(connection.ops.quote_name(name) for name in ("status", *columns))
    lock = " FOR SHARE" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {names} FROM {table} WHERE id = %s{lock}", [rollout_id])  # noqa: S608 (names are ours)
        return cursor.fetchone()
