"""Rollouts and their per-node operations."""

from django.db import models

from . import states

ROLLOUT_INTENTS = [("shared", "shared"), ("isolated", "isolated")]
ROLLOUT_KINDS = [("pid", "PID-namespace mode"), ("gates", "feature gates")]


class RolloutStatus(models.TextChoices):
    DRAFT = states.DRAFT
    RUNNING = states.RUNNING
    PAUSED = states.PAUSED
    AWAITING_APPROVAL = states.AWAITING_APPROVAL
    ROLLING_BACK = states.ROLLING_BACK
    SUCCEEDED = states.SUCCEEDED
    FAILED = states.FAILED
    ABORTED = states.ABORTED
    ROLLED_BACK = states.ROLLED_BACK


ROLLOUT_ACTIVE_STATES = states.ROLLOUT_ACTIVE
ROLLOUT_FINAL_STATES = states.ROLLOUT_FINAL


class Rollout(models.Model):
    """A change of PID-namespace mode over a cluster's nodes, in waves.

    Transitions (:data:`rollout.states.ROLLOUT`; each a conditional update in
    :mod:`rollout.transitions` or :mod:`rollout.advancer`):

    """

    name = models.CharField(max_length=100)
    cluster = models.ForeignKey("nodes.Cluster", on_delete=models.PROTECT, related_name="rollouts")
    selector = models.JSONField(default=dict, blank=True)
    kind = models.CharField(max_length=8, default="pid", choices=ROLLOUT_KINDS)
    intent = models.CharField(max_length=16, choices=ROLLOUT_INTENTS, blank=True, help_text="For a mode change.")
    gate_changes = models.JSONField(
        default=dict, blank=True, help_text="For a gate change: {Name: true|false|null}, null removes the gate."
    )
    canary_count = models.PositiveIntegerField(default=1)
    batch_size = models.PositiveIntegerField(default=10)
    batch_percent = models.BooleanField(default=False)
    max_unavailable = models.PositiveIntegerField(default=5)
    soak_seconds = models.PositiveIntegerField(default=0)
    max_failures = models.PositiveIntegerField(default=0)
    auto_rollback = models.BooleanField(default=True)
    pause_after_canary = models.BooleanField(default=False)
    canary_analysis = models.BooleanField(
        default=False,
        help_text="Decide on the canary's evidence: go on when healthy, roll back (or stop) when not.",
    )
    canary_evidence = models.JSONField(null=True, blank=True, help_text="What the canary analysis saw.")
    window = models.JSONField(null=True, blank=True)
    busy_policy = models.CharField(max_length=8, default="refuse", choices=[("refuse", "refuse"), ("wait", "wait")])
    drain = models.BooleanField(
        default=False, help_text="Cordon and drain each node around its change (the cluster's Kubernetes API)."
    )
    drain_timeout = models.PositiveIntegerField(default=600, help_text="Seconds a drain may take.")
    delete_emptydir_data = models.BooleanField(default=False, help_text="Evict pods with emptyDir volumes too.")
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

    @property
    def change_label(self) -> str:
        """What the rollout changes, in words: ``to shared``, ``gates NodeSwap=true``."""
        if self.kind == "gates":
            changes = ", ".join(
                f"{name}={'remove' if on is None else str(on).lower()}"
                for name, on in sorted(self.gate_changes.items())
            )
            return f"gates {changes}"
        return f"to {self.intent}"


Rollout.__doc__ += states.ROLLOUT.describe()


class OperationState(models.TextChoices):
    PENDING = states.PENDING
    RUNNING = states.OP_RUNNING
    SUCCEEDED = states.OP_SUCCEEDED
    FAILED = states.OP_FAILED
    SKIPPED = states.SKIPPED
    NEEDS_MANUAL = states.NEEDS_MANUAL
    CANCELLED = states.CANCELLED


OPERATION_ACTIVE_STATES = states.OPERATION_ACTIVE
OPERATION_FINAL_STATES = states.OPERATION_FINAL


class NodeOperation(models.Model):
    """One node's change within a rollout.

    A running operation is a small state machine in its row: ``step`` (apply, then verify) says
    what is next and ``wake_at`` when it is due. A worker works on a step only when it is due,
    under a short lease (``lease_owner``, ``lease_until``); between steps the operation holds no
    worker. A worker that dies mid-step loses its lease and the step runs again (each step is
    idempotent). At most one operation per node is running, across all rollouts (a database
    constraint). Transitions (:data:`rollout.states.OPERATION`, each a conditional update on the
    state, and on the lease owner while a worker holds it):

    """

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="operations")
    node = models.ForeignKey("nodes.Node", on_delete=models.CASCADE, related_name="operations")
    phase = models.CharField(max_length=10, default=states.FORWARD, choices=[(p, p) for p in states.PHASES])
    wave = models.PositiveIntegerField(default=0)
    state = models.CharField(
        max_length=16, choices=OperationState.choices, default=OperationState.PENDING, db_index=True
    )
    step = models.CharField(max_length=16, blank=True, help_text="What a running operation does next.")
    wake_at = models.DateTimeField(null=True, blank=True, help_text="When its next step is due.")
    deadline = models.DateTimeField(null=True, blank=True, help_text="When the step it waits in gives up.")
    verify_state = models.JSONField(null=True, blank=True, help_text="What verification has seen so far.")
    cordoned = models.BooleanField(default=False, help_text="This operation cordoned its node and owes an uncordon.")
    drain_state = models.JSONField(default=dict, blank=True, help_text="What cordon and drain have done so far.")
    expected_mode = models.CharField(max_length=16, blank=True)
    before_flags = models.JSONField(null=True, blank=True)
    before_mode = models.CharField(max_length=16, blank=True)
    target_flags = models.JSONField(null=True, blank=True)
    after_flags = models.JSONField(null=True, blank=True)
    changed = models.BooleanField(default=False, help_text="The operation passed its write gate.")
    written_at = models.DateTimeField(null=True, blank=True, help_text="When it passed its write gate.")
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
                condition=models.Q(state__in=list(states.OPERATION_ACTIVE)),
                name="one_active_operation_per_node",
            ),
        ]
        indexes = [
            # Serves the counts per state and, in wave order, the next pending operations to start
            # (a hand-over stops at the first free ones instead of sorting the whole wave).
            models.Index(fields=["rollout", "phase", "state", "wave", "id"], name="operation_next_pending"),
            models.Index(fields=["state", "wake_at"], name="operation_due"),
        ]

    def __str__(self) -> str:
        return f"{self.phase} op {self.pk} on node {self.node_id} ({self.state})"


NodeOperation.__doc__ += states.OPERATION.describe()
