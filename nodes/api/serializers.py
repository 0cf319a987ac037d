"""Inventory serializers. Validation reuses :mod:`nodes.validation`; writes go through services."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from gates.api.serializers import DecisionSerializer
from rollout.events import actor_of

from .. import services
from ..decisions import DECISION_COLUMNS, node_decision
from ..models import Cluster, Node
from ..validation import NODE_FIELDS, NORMALIZERS, check_runtime_version, normalize_labels


def _normalized(field_name):
    def validate(self, value):
        try:
            return NORMALIZERS[field_name](value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    return validate


class ClusterSerializer(serializers.ModelSerializer):
    node_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Cluster
        fields = ["id", "name", "plan", "description", "labels", "node_count", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]

    def validate_labels(self, value):
        try:
            return normalize_labels(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def create(self, validated_data):
        return services.cluster_create(actor=actor_of(self.context["request"]), **validated_data)

    def update(self, instance, validated_data):
        return services.cluster_update(actor=actor_of(self.context["request"]), cluster=instance, **validated_data)


# Observed by audits or derived from the facts: never written through the API.
_READ_ONLY = [
    "observed_pid_namespace",
    "reachable",
    "last_audit_at",
    "audit_error",
    *DECISION_COLUMNS,
    "created_at",
    "updated_at",
]


class NodeSerializer(serializers.ModelSerializer):
    cluster = serializers.SlugRelatedField(slug_field="name", queryset=Cluster.objects.all())
    plan = serializers.CharField(source="cluster.plan", read_only=True)

    class Meta:
        model = Node
        fields = ["id", "cluster", "plan", *(f for f in NODE_FIELDS if f != "cluster"), *_READ_ONLY]
        read_only_fields = _READ_ONLY

    validate_name = _normalized("name")
    validate_labels = _normalized("labels")
    validate_docker_endpoint = _normalized("docker_endpoint")
    validate_kubelet_version = _normalized("kubelet_version")
    validate_runtime_version = _normalized("runtime_version")
    validate_docker_api_version = _normalized("docker_api_version")
    validate_kubelet_flags = _normalized("kubelet_flags")
    validate_pause_image = _normalized("pause_image")

    def validate(self, attrs):
        runtime = attrs.get("container_runtime", getattr(self.instance, "container_runtime", "docker"))
        version = attrs.get("runtime_version", getattr(self.instance, "runtime_version", ""))
        try:
            check_runtime_version(runtime, version)
        except ValueError as exc:
            raise serializers.ValidationError({"runtime_version": [str(exc)]}) from None
        return attrs

    def create(self, validated_data):
        return services.node_create(actor=actor_of(self.context["request"]), **validated_data)

    def update(self, instance, validated_data):
        return services.node_update(actor=actor_of(self.context["request"]), node=instance, **validated_data)


class NodeDetailSerializer(NodeSerializer):
    """A node with its current decision under its cluster's plan (null when facts are missing)."""

    decision = serializers.SerializerMethodField()

    class Meta(NodeSerializer.Meta):
        fields = [*NodeSerializer.Meta.fields, "decision"]

    @extend_schema_field(DecisionSerializer(allow_null=True))
    def get_decision(self, node):
        decision, _ = node_decision(node.facts(), node.cluster.plan)
        return decision.as_dict() if decision else None


class ImportRequestSerializer(serializers.Serializer):
    """Documents the import body: nodes (required) and clusters to create or update first."""

    nodes = serializers.ListField(child=serializers.DictField())
    clusters = serializers.ListField(child=serializers.DictField(), required=False)


class ImportResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    clusters_created = serializers.IntegerField()
    clusters_updated = serializers.IntegerField()


class CountsField(serializers.DictField):
    child = serializers.IntegerField()


class ClusterSummarySerializer(serializers.Serializer):
    name = serializers.CharField()
    plan = serializers.CharField()
    total = serializers.IntegerField()
    by_pid_namespace = CountsField()
    by_mechanism = CountsField()
    by_observed_pid_namespace = CountsField()
    by_rollback_method = CountsField()
    blockers_to_shared = CountsField()
    blockers_to_isolated = CountsField()


class FleetSummarySerializer(ClusterSummarySerializer):
    name = None
    plan = None
    clusters = ClusterSummarySerializer(many=True)
