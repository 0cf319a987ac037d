"""Inventory: clusters and their nodes, with the facts observed on each node.

Rows are written only through :mod:`nodes.services`, which keep the stored decision columns in
step with the facts and the cluster's plan.
"""

from __future__ import annotations

from django.db import models

from gates import policy

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


class Cluster(models.Model):
    """A Kubernetes cluster. Its ``plan`` says which rollout plan decides its nodes."""

    name = models.CharField(max_length=63, unique=True, validators=[FieldValidator("cluster_name")])
    plan = models.CharField(max_length=16, choices=Plan.choices, default=Plan.PROPOSAL)
    description = models.TextField(blank=True, max_length=2000)
    labels = models.JSONField(default=dict, blank=True, validators=[FieldValidator("labels")])
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Node(models.Model):
    """A node of a cluster: how to reach its Docker engine, and the facts seen on it.

    The observed facts (versions, flags, pause image, observed mode) come from audits or from
    the inventory import. The decision columns (``pid_namespace`` to ``decision_error``) are
    derived from the facts under the cluster's plan and kept for filtering and aggregation.
    """

    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="nodes")
    name = models.CharField(max_length=253, validators=[FieldValidator("name")])
    labels = models.JSONField(default=dict, blank=True, validators=[FieldValidator("labels")])
    docker_endpoint = models.CharField(max_length=255, blank=True, validators=[FieldValidator("docker_endpoint")])
    managed = models.BooleanField(default=True, help_text="Whether rollouts may change this node.")

    kubelet_version = models.CharField(max_length=128, blank=True, validators=[FieldValidator("kubelet_version")])
    container_runtime = models.CharField(
        max_length=16, choices=ContainerRuntime.choices, default=ContainerRuntime.DOCKER
    )
    runtime_version = models.CharField(max_length=128, blank=True, validators=[FieldValidator("runtime_version")])
    docker_api_version = models.CharField(max_length=8, blank=True, validators=[FieldValidator("docker_api_version")])
    kubelet_flags = models.JSONField(default=dict, blank=True, validators=[FieldValidator("kubelet_flags")])
    pause_image = models.CharField(max_length=255, blank=True, validators=[FieldValidator("pause_image")])
    observed_pid_namespace = models.CharField(
        max_length=16, choices=ObservedPidNamespace.choices, default=ObservedPidNamespace.UNKNOWN
    )
    reachable = models.BooleanField(null=True, default=None)
    last_audit_at = models.DateTimeField(null=True, blank=True)
    audit_error = models.TextField(blank=True)

    kubelet_minor = models.CharField(max_length=16, blank=True, db_index=True)
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
        indexes = [models.Index(fields=["cluster", "pid_namespace"], name="node_cluster_pidns")]

    def __str__(self) -> str:
        return f"{self.cluster_id}/{self.name}"

    def facts(self) -> dict:
        return {
            "kubelet_version": self.kubelet_version,
            "container_runtime": self.container_runtime,
            "runtime_version": self.runtime_version,
            "kubelet_flags": self.kubelet_flags,
            "pause_image": self.pause_image,
        }
