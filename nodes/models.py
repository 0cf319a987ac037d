"""Inventory: clusters and their nodes, with the facts observed on each node.

Rows are written only through :mod:`nodes.services`, which keep the stored decision columns in
step with the facts and the cluster's plan.
"""

from __future__ import annotations

from django.db import models

from drivers.dropin import Desired, effective_gates
from gates import policy

from . import states
from .validation import FieldValidator


class Plan(models.TextChoices):
    PROPOSAL = policy.PLAN_PROPOSAL, "proposal (1.6/1.7 plan of the design proposal)"
    UPSTREAM = policy.PLAN_UPSTREAM, "upstream (what Kubernetes shipped)"


class ContainerRuntime(models.TextChoices):
    DOCKER = "docker"
    RKT = "rkt"
    CRI_O = "cri-o"
    HYPER = "hyper"
    CONTAINERD = "containerd"


class ObservedPidNamespace(models.TextChoices):
    SHARED = "shared"
    ISOLATED = "isolated"
    MIXED = "mixed"
    UNKNOWN = "unknown"


class PidNamespace(models.TextChoices):
    SHARED = policy.SHARED
    ISOLATED = policy.ISOLATED
    PER_POD = policy.PER_POD
    UNKNOWN = "unknown"


class Mechanism(models.TextChoices):
    CRI = policy.CRI
    DOCKERTOOLS = policy.DOCKERTOOLS
    RUNTIME = policy.RUNTIME
    NONE = "", "not decided"


class RollbackMethod(models.TextChoices):
    KUBELET_FLAG = policy.ROLLBACK_KUBELET_FLAG
    DOWNGRADE = policy.ROLLBACK_DOWNGRADE
    NOT_NEEDED = policy.ROLLBACK_NOT_NEEDED
    UNSUPPORTED = policy.ROLLBACK_UNSUPPORTED
    NONE = "", "not decided"


class DockerCredential(models.Model):
    """TLS material for reaching Docker engines over ``tcp://``: a CA to verify the engine, and
    optionally a client certificate and key. The key is write-only: no API or page returns it."""

    name = models.CharField(max_length=63, unique=True, validators=[FieldValidator("cluster_name")])
    ca_cert = models.TextField(help_text="PEM CA certificate(s) that sign the engines' server certificates.")
    client_cert = models.TextField(blank=True, help_text="PEM client certificate, for engines that require one.")
    client_key = models.TextField(blank=True, help_text="PEM client key. Never shown again.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Cluster(models.Model):
    """A Kubernetes cluster. Its ``plan`` says which rollout plan decides its nodes."""

    name = models.CharField(max_length=63, unique=True, validators=[FieldValidator("cluster_name")])
    plan = models.CharField(max_length=16, choices=Plan.choices, default=Plan.PROPOSAL)
    description = models.TextField(blank=True, max_length=2000)
    labels = models.JSONField(default=dict, blank=True, validators=[FieldValidator("labels")])
    desired_gates = models.JSONField(
        default=dict, blank=True, help_text="Feature gates the cluster's nodes should run with (nodes may override)."
    )
    docker_credential = models.ForeignKey(
        DockerCredential,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="clusters",
        help_text="Default TLS credentials for the cluster's nodes.",
    )
    # --- the cluster's Kubernetes API (optional): nodes discovered from it, cordon and drain
    kube_api_server = models.CharField(
        max_length=255, blank=True, help_text="The API server's https:// URL; empty: the cluster has none."
    )
    kube_ca_cert = models.TextField(blank=True, help_text="PEM CA that signs the API server's certificate.")
    kube_token = models.TextField(blank=True, help_text="Bearer token. Never shown again.")
    kube_client_cert = models.TextField(blank=True, help_text="PEM client certificate, instead of a token.")
    kube_client_key = models.TextField(blank=True, help_text="PEM client key. Never shown again.")
    kube_endpoint_template = models.CharField(
        max_length=255,
        blank=True,
        help_text="Each node's Docker endpoint from its addresses, e.g. tcp://{InternalIP}:2376 "
        "(a node's pidns.io/docker-endpoint annotation wins).",
    )
    kube_synced_at = models.DateTimeField(null=True, blank=True)
    kube_sync_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def has_kube_api(self) -> bool:
        return bool(self.kube_api_server)


class ObservedVia(models.TextChoices):
    """How the observed facts of a node were last read."""

    NEVER = "", "never read"
    INVENTORY = "inventory", "reported by the inventory"
    AUDIT = "audit"
    PREFLIGHT = "preflight", "a rollout operation's first read"
    VERIFY = "verify", "a rollout operation's verification"
    SYNC = "sync", "the cluster's Kubernetes API"


class Node(models.Model):
    """A node of a cluster: how to reach it, what the service wants of it, and what was seen on it.

    Like a Kubernetes object's spec and status, two kinds of state are kept apart:

    * **desired** (``desired_flags``; feature gates: the cluster's ``desired_gates`` with the node's
      own ``desired_gates`` over them, a null taking a gate away): the managed kubelet flags and
      feature gates the service intends for the node; ``None`` when it has no intent yet. Written by
      inventory edits and imports, and by a rollout operation once it has written the node (and by
      its rollback). Never by an audit or a sync.
    * **observed** (versions, ``kubelet_flags``, pause image, ``observed_pid_namespace``, ``ready``,
      ``cordoned``, ``reachable``): what was last read, with ``observed_at`` and ``observed_via``.
      Written by audits, syncs and operations; an inventory import may report them for nodes the
      service cannot reach.

    ``drift`` says the last reading differs from the desired state on a managed key, or the pods run
    in another mode than the desired settings give on this node. The decision columns
    (``pid_namespace`` to ``decision_error``) are derived from the observed facts under the cluster's
    plan, for filtering and aggregation.
    """

    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="nodes")
    name = models.CharField(max_length=253, validators=[FieldValidator("name")])
    labels = models.JSONField(default=dict, blank=True, validators=[FieldValidator("labels")])
    docker_endpoint = models.CharField(max_length=255, blank=True, validators=[FieldValidator("docker_endpoint")])
    managed = models.BooleanField(default=True, help_text="Whether rollouts may change this node.")
    docker_credential = models.ForeignKey(
        DockerCredential,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="nodes",
        help_text="TLS credentials for this node (else the cluster's).",
    )
    docker_insecure = models.BooleanField(
        default=False, help_text="Allow plain HTTP to a non-loopback tcp:// endpoint (no TLS). Avoid."
    )

    # --- desired
    desired_flags = models.JSONField(
        null=True, blank=True, help_text="Managed kubelet flags the service intends (feature gates apart)."
    )
    desired_gates = models.JSONField(
        null=True, blank=True, help_text="The node's own feature-gate settings over its cluster's (null removes one)."
    )
    desired_source = models.CharField(max_length=200, blank=True, help_text="Who set the desired state last.")
    desired_at = models.DateTimeField(null=True, blank=True)

    # --- observed
    kubelet_version = models.CharField(max_length=128, blank=True, validators=[FieldValidator("kubelet_version")])
    container_runtime = models.CharField(
        max_length=16, choices=ContainerRuntime.choices, default=ContainerRuntime.DOCKER
    )
    runtime_version = models.CharField(max_length=128, blank=True, validators=[FieldValidator("runtime_version")])
    docker_api_version = models.CharField(max_length=8, blank=True, validators=[FieldValidator("docker_api_version")])
    kubelet_flags = models.JSONField(default=dict, blank=True, validators=[FieldValidator("kubelet_flags")])
    observed_gates = models.JSONField(
        default=dict, blank=True, help_text="The gates the kubelet runs with: its configuration's, and the drop-in's."
    )
    pause_image = models.CharField(max_length=255, blank=True, validators=[FieldValidator("pause_image")])
    observed_pid_namespace = models.CharField(
        max_length=16, choices=ObservedPidNamespace.choices, default=ObservedPidNamespace.UNKNOWN
    )
    observed_at = models.DateTimeField(null=True, blank=True)
    observed_via = models.CharField(max_length=16, choices=ObservedVia.choices, blank=True, default="")
    ready = models.BooleanField(null=True, default=None, help_text="The node's Ready condition (Kubernetes API).")
    cordoned = models.BooleanField(null=True, default=None, help_text="spec.unschedulable (Kubernetes API).")
    cordoned_by_service = models.BooleanField(
        default=False, help_text="This service cordoned the node and has not uncordoned it yet."
    )
    in_cluster = models.BooleanField(
        null=True, default=None, help_text="Listed by the cluster's Kubernetes API at its last sync."
    )
    left_cluster_at = models.DateTimeField(null=True, blank=True, help_text="When a sync first missed it.")
    reachable = models.BooleanField(null=True, default=None)
    last_audit_at = models.DateTimeField(null=True, blank=True)
    audit_error = models.TextField(blank=True)
    audit_error_code = models.CharField(max_length=32, blank=True)
    drift = models.BooleanField(
        default=False, db_index=True, help_text="The last reading differs from the desired state."
    )
    drift_details = models.JSONField(default=list, blank=True)
    audit_lease = models.ForeignKey("Audit", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    audit_lease_until = models.DateTimeField(null=True, blank=True)

    # --- derived from the observed facts
    kubelet_minor = models.CharField(max_length=16, blank=True, db_index=True)
    runtime_line = models.CharField(
        max_length=16, blank=True, default="", help_text="Docker release line (1.12, 17.03) or the runtime's name."
    )
    # Text keys that sort the versions in version order (v1.6 before v1.10), for sorted lists.
    kubelet_order = models.CharField(max_length=32, blank=True, default="")
    runtime_order = models.CharField(max_length=32, blank=True, default="")
    pid_namespace = models.CharField(
        max_length=16, choices=PidNamespace.choices, default=PidNamespace.UNKNOWN, db_index=True
    )
    mechanism = models.CharField(max_length=16, choices=Mechanism.choices, blank=True, default="")
    rollback_method = models.CharField(max_length=16, choices=RollbackMethod.choices, blank=True, default="")
    shared_blocker = models.CharField(max_length=64, blank=True, default="")
    isolated_blocker = models.CharField(max_length=64, blank=True, default="")
    decision_error = models.CharField(max_length=500, blank=True, default="")

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["cluster_id", "name"]
        constraints = [models.UniqueConstraint(fields=["cluster", "name"], name="node_unique_name_per_cluster")]
        indexes = [
            models.Index(fields=["cluster", "pid_namespace"], name="node_cluster_pidns"),
            # The overview's first drifting nodes, in order, without reading the others.
            models.Index(fields=["cluster", "name"], condition=models.Q(drift=True), name="node_drifting"),
            # The overview's nodes whose last reading failed, likewise.
            models.Index(fields=["cluster", "name"], condition=~models.Q(audit_error_code=""), name="node_unread"),
        ]

    def __str__(self) -> str:
        return f"{self.cluster_id}/{self.name}"

    def facts(self) -> dict:
        """The observed facts, as the decision engine takes them."""
        return {
            "kubelet_version": self.kubelet_version,
            "container_runtime": self.container_runtime,
            "runtime_version": self.runtime_version,
            "kubelet_flags": self.kubelet_flags,
            "pause_image": self.pause_image,
        }

    def desired_gate_map(self) -> dict[str, bool] | None:
        """The gates the node should run with (its cluster's and its own), or None for no intent."""
        return effective_gates(self.cluster.desired_gates, self.desired_gates)

    def desired(self) -> Desired | None:
        """What the service intends for the node, or None when it has no intent yet."""
        gates = self.desired_gate_map()
        if self.desired_flags is None and gates is None:
            return None
        return Desired(flags=self.desired_flags, gates=gates)


# What readings of a node write (never the API).
NODE_OBSERVED_FIELDS = (
    "observed_pid_namespace",
    "observed_at",
    "observed_via",
    "ready",
    "cordoned",
    "cordoned_by_service",
    "in_cluster",
    "left_cluster_at",
    "reachable",
    "last_audit_at",
    "audit_error",
    "audit_error_code",
    "drift",
    "drift_details",
)
NODE_DESIRED_FIELDS = ("desired_flags", "desired_gates", "desired_source", "desired_at")


# The columns the overview counts nodes by (see NodeCount).
COUNTED_COLUMNS = (
    "cluster_id",
    "kubelet_minor",
    "runtime_line",
    "pid_namespace",
    "mechanism",
    "observed_pid_namespace",
    "rollback_method",
    "shared_blocker",
    "isolated_blocker",
    "drift",
)


class NodeCount(models.Model):
    """How many nodes have one combination of the counted columns, kept by the database itself.

    Triggers on the node table (migration ``0007_node_counts``) append the net change of every
    statement that inserts, deletes or changes a counted column of nodes: rows of +n and -n, never
    an update of a shared row, so concurrent writers do not queue on a counter. A combination's
    count is the sum of its rows; :func:`nodes.selectors.node_counts` folds the rows together when
    they pile up. The overview reads this table, whose size follows the number of distinct
    combinations (a few hundred), not the number of nodes.
    """

    cluster_id = models.BigIntegerField()  # no foreign key: a deleted cluster's rows sum to zero
    kubelet_minor = models.CharField(max_length=16)
    runtime_line = models.CharField(max_length=16)
    pid_namespace = models.CharField(max_length=16)
    mechanism = models.CharField(max_length=16)
    observed_pid_namespace = models.CharField(max_length=16)
    rollback_method = models.CharField(max_length=16)
    shared_blocker = models.CharField(max_length=64)
    isolated_blocker = models.CharField(max_length=64)
    drift = models.BooleanField()
    n = models.IntegerField()

    class Meta:
        indexes = [models.Index(fields=["cluster_id"], name="nodecount_cluster")]

    def __str__(self) -> str:
        return f"{self.cluster_id}: {self.n:+d}"


class AuditStatus(models.TextChoices):
    QUEUED = states.QUEUED
    RUNNING = states.RUNNING
    SUCCEEDED = states.SUCCEEDED
    FAILED = states.FAILED
    TIMED_OUT = states.TIMED_OUT


AUDIT_ACTIVE_STATES = states.AUDIT_ACTIVE
AUDIT_FINAL_STATES = states.AUDIT_FINAL


class Audit(models.Model):
    """One reading of the fleet (or of one cluster) from the nodes themselves.

    Per-node failures (unreachable, too old) do not fail the audit: they are results. A resumed
    audit does not read again the nodes it already observed. Transitions
    (:data:`nodes.states.AUDIT`, each a conditional update):

    """

    status = models.CharField(max_length=16, choices=AuditStatus.choices, default=AuditStatus.QUEUED, db_index=True)
    requested_by = models.CharField(max_length=200)
    cluster = models.ForeignKey(Cluster, null=True, blank=True, on_delete=models.CASCADE, related_name="audits")
    concurrency = models.PositiveIntegerField(default=20)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    drifted = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"audit {self.pk} ({self.status})"


Audit.__doc__ += states.AUDIT.describe()


class NodeObservation(models.Model):
    """One reading of one node (by an audit, an operation or a sync): the facts, the observed mode,
    any error, and drift against the desired state of that moment."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="observations")
    audit = models.ForeignKey(Audit, null=True, blank=True, on_delete=models.SET_NULL, related_name="observations")
    source = models.CharField(max_length=16, choices=ObservedVia.choices, default=ObservedVia.AUDIT)
    observed_at = models.DateTimeField(db_index=True)
    reachable = models.BooleanField()
    error_code = models.CharField(max_length=32, blank=True)
    error = models.TextField(blank=True)
    facts = models.JSONField(default=dict, blank=True)
    observed_pid_namespace = models.CharField(
        max_length=16, choices=ObservedPidNamespace.choices, default=ObservedPidNamespace.UNKNOWN
    )
    drift = models.BooleanField(default=False)
    drift_details = models.JSONField(default=list, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-observed_at", "-id"]
        indexes = [models.Index(fields=["node", "-observed_at"], name="observation_node_time")]
        constraints = [
            models.UniqueConstraint(fields=["audit", "node"], name="observation_once_per_audit"),
        ]

    def __str__(self) -> str:
        return f"{self.node_id} @ {self.observed_at:%Y-%m-%d %H:%M:%S}"
