"""Rollouts and their per-node operations."""

from django.db import models

ROLLOUT_INTENTS = [("shared", "shared"), ("isolated", "isolated")]


class RolloutStatus(models.TextChoices):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    AWAITING_APPROVAL = "awaiting-approval"
    ROLLING_BACK = "rolling-back"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"
    ROLLED_BACK = "rolled-back"


ROLLOUT_ACTIVE_STATES = (
    RolloutStatus.RUNNING,
    RolloutStatus.PAUSED,
    RolloutStatus.AWAITING_APPROVAL,
    RolloutStatus.ROLLING_BACK,
)
ROLLOUT_FINAL_STATES = (RolloutStatus.SUCCEEDED, RolloutStatus.FAILED, RolloutStatus.ABORTED, RolloutStatus.ROLLED_BACK)


class Rollout(models.Model):
    """A change of PID-namespace mode over a cluster's nodes, in waves.

    Transitions (each an atomic check-and-set in ``rollout.services``):

    * draft -> running (start)
    * running -> paused (pause) -> running (resume)
    * running -> awaiting-approval (after the canary wave, when asked) -> running (approve)
    * running -> succeeded (every operation done within the failure budget)
    * running -> rolling-back (budget exceeded with auto_rollback) -> rolled-back | failed
    * running -> failed (budget exceeded without auto_rollback)
    * succeeded | failed | aborted -> rolling-back (rollback)
    * draft | running | paused | awaiting-approval | rolling-back -> aborted (abort)
    """

    name = models.CharField(max_length=100)
    cluster = models.ForeignKey("nodes.Cluster", on_delete=models.PROTECT, related_name="rollouts")
    selector = models.JSONField(default=dict, blank=True)
    intent = models.CharField(max_length=16, choices=ROLLOUT_INTENTS)
    canary_count = models.PositiveIntegerField(default=1)
    batch_size = models.PositiveIntegerField(default=10)
    batch_percent = models.BooleanField(default=False)
    max_unavailable = models.PositiveIntegerField(default=5)
    soak_seconds = models.PositiveIntegerField(default=0)
    max_failures = models.PositiveIntegerField(default=0)
    auto_rollback = models.BooleanField(default=True)
    pause_after_canary = models.BooleanField(default=False)
    window = models.JSONField(null=True, blank=True)
    busy_policy = models.CharField(max_length=8, default="refuse", choices=[("refuse", "refuse"), ("wait", "wait")])
    status = models.CharField(max_length=20, choices=RolloutStatus.choices, default=RolloutStatus.DRAFT, db_index=True)
    reason = models.TextField(blank=True)
    current_wave = models.PositiveIntegerField(default=0)
    canary_approved = models.BooleanField(default=False)
    soak_until = models.DateTimeField(null=True, blank=True)
    predicted_seconds = models.FloatField(default=0)
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"rollout {self.pk} {self.name} ({self.status})"


class OperationState(models.TextChoices):
    PENDING = "pending"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    NEEDS_MANUAL = "needs-manual"
    CANCELLED = "cancelled"


OPERATION_ACTIVE_STATES = (OperationState.DISPATCHED, OperationState.RUNNING)
OPERATION_FINAL_STATES = (
    OperationState.SUCCEEDED,
    OperationState.FAILED,
    OperationState.SKIPPED,
    OperationState.NEEDS_MANUAL,
    OperationState.CANCELLED,
)


class NodeOperation(models.Model):
    """One node's change within a rollout: preflight, apply, verify.

    Transitions: pending -> dispatched (the advancer gave it a slot) -> running (a worker
    claimed it) -> succeeded | failed | skipped | needs-manual; pending or dispatched ->
    cancelled (abort). A running operation whose lease expires (its worker died) goes back to
    dispatched and runs again: apply is idempotent and verify re-reads the node. At most one
    operation per node is dispatched or running, across all rollouts (a database constraint).
    """

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="operations")
    node = models.ForeignKey("nodes.Node", on_delete=models.CASCADE, related_name="operations")
    phase = models.CharField(
        max_length=10, default="forward", choices=[("forward", "forward"), ("rollback", "rollback")]
    )
    wave = models.PositiveIntegerField(default=0)
    state = models.CharField(
        max_length=16, choices=OperationState.choices, default=OperationState.PENDING, db_index=True
    )
    expected_mode = models.CharField(max_length=16, blank=True)
    before_flags = models.JSONField(null=True, blank=True)
    before_mode = models.CharField(max_length=16, blank=True)
    target_flags = models.JSONField(null=True, blank=True)
    after_flags = models.JSONField(null=True, blank=True)
    changed = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0)
    skip_reason = models.CharField(max_length=200, blank=True)
    error_code = models.CharField(max_length=32, blank=True)
    error = models.TextField(blank=True)
    proof = models.JSONField(default=list, blank=True)
    lease_owner = models.CharField(max_length=200, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["phase", "wave", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["node"],
                condition=models.Q(state__in=["dispatched", "running"]),
                name="one_active_operation_per_node",
            ),
        ]
        indexes = [models.Index(fields=["rollout", "phase", "state"], name="operation_rollout_state")]

    def __str__(self) -> str:
        return f"{self.phase} op {self.pk} on node {self.node_id} ({self.state})"
