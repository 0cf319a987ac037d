"""The audit's state machine. Pure module: no Django import."""

from __future__ import annotations

from core.machines import SYSTEM, Machine, Transition

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
TIMED_OUT = "timed-out"

AUDIT_STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, TIMED_OUT)
AUDIT_ACTIVE = (QUEUED, RUNNING)
AUDIT_FINAL = (SUCCEEDED, FAILED, TIMED_OUT)

AUDIT = Machine(
    "an audit",
    AUDIT_STATES,
    [
        Transition("claim", (QUEUED,), RUNNING, SYSTEM, "a worker takes it"),
        Transition("succeed", (RUNNING,), SUCCEEDED, SYSTEM, "every node was read (per-node failures are results)"),
        Transition("fail", (RUNNING,), FAILED, SYSTEM, "the audit itself broke (not a node)"),
        Transition(
            "requeue",
            (RUNNING,),
            QUEUED,
            SYSTEM,
            "its worker stopped or its time ran out; it resumes, skipping the nodes already read",
        ),
        Transition("time-out", (RUNNING,), TIMED_OUT, SYSTEM, "its time ran out on every attempt"),
    ],
)
