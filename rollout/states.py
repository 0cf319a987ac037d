"""The rollout's and the node operation's state machines. Pure module: no Django import.

These tables are the only place the legal transitions are written: the services apply them as
conditional updates, the API and the dashboard offer the operator actions they allow, and the
models' docstrings are generated from them.
"""

from __future__ import annotations

from core.machines import OPERATOR, SYSTEM, Machine, Transition

# --- rollouts ---------------------------------------------------------------------------------------

DRAFT = "draft"
RUNNING = "running"
PAUSED = "paused"
AWAITING_APPROVAL = "awaiting-approval"
ROLLING_BACK = "rolling-back"
SUCCEEDED = "succeeded"
FAILED = "failed"
ABORTED = "aborted"
ROLLED_BACK = "rolled-back"

ROLLOUT_STATES = (DRAFT, RUNNING, PAUSED, AWAITING_APPROVAL, ROLLING_BACK, SUCCEEDED, FAILED, ABORTED, ROLLED_BACK)
# A rollout in these states may still change nodes.
ROLLOUT_ACTIVE = (RUNNING, PAUSED, AWAITING_APPROVAL, ROLLING_BACK)
ROLLOUT_FINAL = (SUCCEEDED, FAILED, ABORTED, ROLLED_BACK)
# Forward operations already in flight may go on writing to their node in these states; a rollback
# operation only while rolling back.
FORWARD_MAY_WRITE = (RUNNING, PAUSED, AWAITING_APPROVAL)
ROLLBACK_MAY_WRITE = (ROLLING_BACK,)

ROLLOUT = Machine(
    "a rollout",
    ROLLOUT_STATES,
    [
        Transition("start", (DRAFT,), RUNNING, OPERATOR, "begin the first wave"),
        Transition(
            "pause", (RUNNING, AWAITING_APPROVAL), PAUSED, OPERATOR, "start nothing new; operations in flight finish"
        ),
        Transition("resume", (PAUSED,), RUNNING, OPERATOR, "go on where it stopped"),
        Transition("approve", (AWAITING_APPROVAL,), RUNNING, OPERATOR, "go on past the canary wave"),
        Transition(
            "abort",
            (DRAFT, RUNNING, PAUSED, AWAITING_APPROVAL, ROLLING_BACK),
            ABORTED,
            OPERATOR,
            "stop for good: no operation starts after the abort; one that has not written to its node is cancelled, "
            "one that has finishes verifying; nothing is rolled back",
        ),
        Transition(
            "rollback",
            (RUNNING, PAUSED, AWAITING_APPROVAL, SUCCEEDED, FAILED, ABORTED),
            ROLLING_BACK,
            OPERATOR,
            "return every node the rollout changed to its previous settings",
        ),
        Transition("await-approval", (RUNNING,), AWAITING_APPROVAL, SYSTEM, "the canary wave is done"),
        Transition("succeed", (RUNNING,), SUCCEEDED, SYSTEM, "every operation done within the failure budget"),
        Transition("auto-rollback", (RUNNING,), ROLLING_BACK, SYSTEM, "failure budget exceeded, automatic rollback on"),
        Transition(
            "fail",
            (RUNNING, ROLLING_BACK),
            FAILED,
            SYSTEM,
            "failure budget exceeded without automatic rollback, or a rollback that could not finish",
        ),
        Transition("finish-rollback", (ROLLING_BACK,), ROLLED_BACK, SYSTEM, "every changed node is back"),
    ],
)

# --- node operations ---------------------------------------------------------------------------------

PENDING = "pending"
OP_RUNNING = "running"
OP_SUCCEEDED = "succeeded"
OP_FAILED = "failed"
SKIPPED = "skipped"
NEEDS_MANUAL = "needs-manual"
CANCELLED = "cancelled"

OPERATION_STATES = (PENDING, OP_RUNNING, OP_SUCCEEDED, OP_FAILED, SKIPPED, NEEDS_MANUAL, CANCELLED)
OPERATION_ACTIVE = (OP_RUNNING,)
OPERATION_FINAL = (OP_SUCCEEDED, OP_FAILED, SKIPPED, NEEDS_MANUAL, CANCELLED)

OPERATION = Machine(
    "an operation",
    OPERATION_STATES,
    [
        Transition("dispatch", (PENDING,), OP_RUNNING, SYSTEM, "a slot of the rollout is free: its first step is due"),
        Transition("succeed", (OP_RUNNING,), OP_SUCCEEDED, SYSTEM, "the node was verified in the new mode"),
        Transition("fail", (OP_RUNNING,), OP_FAILED, SYSTEM, "a step failed for good"),
        Transition("skip", (OP_RUNNING,), SKIPPED, SYSTEM, "nothing to change, or the node is blocked"),
        Transition("need-manual", (OP_RUNNING,), NEEDS_MANUAL, SYSTEM, "only a person can finish it (a downgrade)"),
        Transition("cancel", (PENDING, OP_RUNNING), CANCELLED, SYSTEM, "its rollout stopped before it wrote"),
    ],
    field="state",
)

# The steps of a running operation, in order. A worker works on a step only when it is due
# (``wake_at``); between steps the operation holds nothing but its row.
# With a drain (the cluster's Kubernetes API): cordon and drain first, uncordon last; an operation
# that cordoned its node ends through ``uncordon`` whatever it ends in.
CORDON = "cordon"
DRAIN = "drain"
APPLY = "apply"
VERIFY = "verify"
UNCORDON = "uncordon"
STEPS = (CORDON, DRAIN, APPLY, VERIFY, UNCORDON)
# What each step is shown as, while it runs.
STEP_WORDS = {
    CORDON: "cordoning",
    DRAIN: "draining",
    APPLY: "applying",
    VERIFY: "verifying",
    UNCORDON: "uncordoning",
}

NODE_MODES = ("shared", "isolated")  # the modes a node's pods can be verified in

FORWARD = "forward"
ROLLBACK = "rollback"
PHASES = (FORWARD, ROLLBACK)


def may_write(phase: str) -> tuple[str, ...]:
    """The rollout states in which an operation of ``phase`` may (still) write to its node."""
    return FORWARD_MAY_WRITE if phase == FORWARD else ROLLBACK_MAY_WRITE


def activity(state: str, step: str, drain_state: dict | None, verify_state: dict | None) -> str:
    """What a running operation is doing, in words (empty when it is not running)."""
    if state != OP_RUNNING:
        return ""
    if step == DRAIN and (drain_state or {}).get("waiting"):
        return f"draining: {len(drain_state['waiting'])} pods wait for their disruption budget"
    if step == VERIFY and (verify_state or {}).get("wait_for") == "drained" and not verify_state.get("ready"):
        return "restarting: waiting for the kubelet and the node to be Ready"
    return STEP_WORDS.get(step, step)
