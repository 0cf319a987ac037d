"""Inventory serializers. Validation reuses :mod:`nodes.validation`; writes go through services."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.events import actor_of
from core.fields import NameRelatedField
from gates.api.serializers import DecisionSerializer
from gates.facts import normalize_gate_map

from .. import services
from ..decisions import DECISION_COLUMNS, expected_mode, node_decision
from ..models import NODE_OBSERVED_FIELDS, Audit, Cluster, DockerCredential, Node, NodeObservation
from ..validation import NODE_FIELDS, NORMALIZERS, check_runtime_version, normalize_labels


def _normalized(field_name):
    def validate(self, value):
        try:
            return NORMALIZERS[field_name](value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    return validate


class ClusterSyncSerializer(serializers.Serializer):
    cluster = serializers.CharField()
    status = serializers.CharField()


KUBE_TEMPLATE_FIELDS = {"InternalIP", "ExternalIP", "Hostname", "InternalDNS", "ExternalDNS", "name"}


class ClusterSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="cluster-detail")
    node_count = serializers.SerializerMethodField()
    docker_credential = NameRelatedField(queryset=DockerCredential.objects.all(), allow_null=True, required=False)
    kube_token = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=8192, help_text="Bearer token. Never shown again."
    )
    kube_client_key = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=16384,
        help_text="PEM client key. Never shown again.",
    )
    kube_api = serializers.SerializerMethodField(help_text="Whether the API has credentials, and the last sync.")

    class Meta:
        model = Cluster
        fields = [
            "id",
            "url",
            "name",
            "plan",
            "description",
            "labels",
            "desired_gates",
            "docker_credential",
            "kube_api_server",
            "kube_ca_cert",
            "kube_token",
            "kube_client_cert",
            "kube_client_key",
            "kube_endpoint_template",
            "kube_api",
            "node_count",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]

    def get_kube_api(self, cluster) -> dict:
        return {
            "configured": cluster.has_kube_api,
            "credentials": "token"
            if cluster.kube_token
            else "client certificate"
            if cluster.kube_client_key
            else "none",
            "synced_at": cluster.kube_synced_at.isoformat() if cluster.kube_synced_at else None,
            "sync_error": cluster.kube_sync_error,
        }

    def validate_kube_api_server(self, value):
        if value and not value.startswith("https://"):
            raise serializers.ValidationError("an https:// URL: the API is reached over TLS, verified")
        return value.rstrip("/")

    def validate_kube_ca_cert(self, value):
        if value and "-----BEGIN CERTIFICATE-----" not in value:
            raise serializers.ValidationError("a PEM certificate (-----BEGIN CERTIFICATE-----)")
        return value

    def validate_kube_client_cert(self, value):
        return self.validate_kube_ca_cert(value)

    def validate_kube_client_key(self, value):
        if value and "PRIVATE KEY-----" not in value:
            raise serializers.ValidationError("a PEM private key")
        return value

    def validate_kube_endpoint_template(self, value):
        import string

        try:
            names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as exc:
            raise serializers.ValidationError(f"not a template: {exc}") from None
        unknown = names - KUBE_TEMPLATE_FIELDS
        if unknown:
            allowed = ", ".join("{" + n + "}" for n in sorted(KUBE_TEMPLATE_FIELDS))
            raise serializers.ValidationError(f"unknown field {sorted(unknown)[0]!r}; use {allowed}")
        if value and not value.startswith(("tcp://", "unix://")):
            raise serializers.ValidationError("a tcp:// or unix:// endpoint, e.g. tcp://{InternalIP}:2376")
        return value

    def validate_labels(self, value):
        try:
            return normalize_labels(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_desired_gates(self, value):
        try:
            return normalize_gate_map(value if value is not None else {})
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def get_node_count(self, cluster) -> int:
        counted = getattr(cluster, "node_count", None)  # lists count in SQL
        return counted if counted is not None else cluster.nodes.count()

    def create(self, validated_data):
        return services.cluster_create(actor=actor_of(self.context["request"]), **validated_data)

    def update(self, instance, validated_data):
        return services.cluster_update(actor=actor_of(self.context["request"]), cluster=instance, **validated_data)


# Observed by audits or derived from the facts: never written through the API.
_READ_ONLY = [
    *NODE_OBSERVED_FIELDS,
    "observed_gates",
    "desired_source",
    "desired_at",
    *(c for c in DECISION_COLUMNS if not c.endswith("_order")),  # sort keys stay internal
    "created_at",
    "updated_at",
]


class NodeSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="node-detail")
    cluster = NameRelatedField(queryset=Cluster.objects.all())
    plan = serializers.CharField(source="cluster.plan", read_only=True)
    docker_credential = NameRelatedField(queryset=DockerCredential.objects.all(), allow_null=True, required=False)

    class Meta:
        model = Node
        fields = [
            "id",
            "url",
            "cluster",
            "plan",
            *(f for f in NODE_FIELDS if f != "cluster"),
            "docker_credential",
            "docker_insecure",
            *_READ_ONLY,
        ]
        read_only_fields = _READ_ONLY

    validate_name = _normalized("name")
    validate_labels = _normalized("labels")
    validate_docker_endpoint = _normalized("docker_endpoint")
    validate_kubelet_version = _normalized("kubelet_version")
    validate_runtime_version = _normalized("runtime_version")
    validate_docker_api_version = _normalized("docker_api_version")
    validate_kubelet_flags = _normalized("kubelet_flags")
    validate_pause_image = _normalized("pause_image")
    validate_desired_flags = _normalized("desired_flags")
    validate_desired_gates = _normalized("desired_gates")

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
    """A node with its current decision under its cluster's plan (null when facts are missing), and
    the mode its desired settings give."""

    decision = serializers.SerializerMethodField()
    desired_pid_namespace = serializers.SerializerMethodField(
        help_text="The mode the node's pods should run in: the decision for its observed facts with the "
        "desired settings applied (the observed mode differing from it is drift)."
    )

    effective_desired_gates = serializers.SerializerMethodField(
        help_text="The gates the node should run with: its cluster's desired_gates with its own over them; "
        "null when neither sets any."
    )

    class Meta(NodeSerializer.Meta):
        fields = [*NodeSerializer.Meta.fields, "effective_desired_gates", "desired_pid_namespace", "decision"]

    @extend_schema_field(serializers.DictField(child=serializers.BooleanField(), allow_null=True))
    def get_effective_desired_gates(self, node):
        return node.desired_gate_map()

    def get_desired_pid_namespace(self, node) -> str:
        return expected_mode(node.facts(), node.desired(), node.cluster.plan)

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


class CredentialSerializer(serializers.ModelSerializer):
    """TLS credentials. ``client_key`` is accepted but never returned."""

    client_key = serializers.CharField(
        write_only=True, required=False, allow_blank=True, style={"input_type": "password"}
    )
    has_client_key = serializers.SerializerMethodField()

    url = serializers.HyperlinkedIdentityField(view_name="credential-detail")

    class Meta:
        model = DockerCredential
        fields = [
            "id",
            "url",
            "name",
            "ca_cert",
            "client_cert",
            "client_key",
            "has_client_key",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]

    def get_has_client_key(self, credential) -> bool:
        return bool(credential.client_key)

    def validate_ca_cert(self, value):
        if "-----BEGIN CERTIFICATE-----" not in value:
            raise serializers.ValidationError("must be a PEM certificate (-----BEGIN CERTIFICATE-----)")
        return value

    def validate_client_cert(self, value):
        if value and "-----BEGIN CERTIFICATE-----" not in value:
            raise serializers.ValidationError("must be a PEM certificate (-----BEGIN CERTIFICATE-----)")
        return value

    def validate_client_key(self, value):
        if value and not ("-----BEGIN" in value and "PRIVATE KEY-----" in value):
            raise serializers.ValidationError("must be a PEM private key")
        return value

    def validate(self, attrs):
        cert = attrs.get("client_cert", getattr(self.instance, "client_cert", ""))
        key = attrs.get("client_key", getattr(self.instance, "client_key", ""))
        if bool(cert) != bool(key):
            raise serializers.ValidationError({"client_key": ["a client certificate and its key go together"]})
        return attrs

    def create(self, validated_data):
        return services.credential_save(actor=actor_of(self.context["request"]), **validated_data)

    def update(self, instance, validated_data):
        return services.credential_save(actor=actor_of(self.context["request"]), credential=instance, **validated_data)


class ObservationSerializer(serializers.ModelSerializer):
    node = serializers.CharField(source="node.name", read_only=True)
    cluster = serializers.CharField(source="node.cluster.name", read_only=True)

    class Meta:
        model = NodeObservation
        fields = [
            "id",
            "audit",
            "node",
            "cluster",
            "observed_at",
            "reachable",
            "error_code",
            "error",
            "facts",
            "observed_pid_namespace",
            "source",
            "drift",
            "drift_details",
            "duration_ms",
        ]
        read_only_fields = fields


class AuditSerializer(serializers.ModelSerializer):
    cluster = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    url = serializers.HyperlinkedIdentityField(view_name="audit-detail")
    progress = serializers.SerializerMethodField(help_text="Percent of the audit's nodes observed.")

    class Meta:
        model = Audit
        fields = [
            "id",
            "url",
            "status",
            "requested_by",
            "cluster",
            "concurrency",
            "total",
            "done",
            "failed",
            "drifted",
            "skipped",
            "progress",
            "attempts",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_progress(self, audit) -> int:
        if audit.status in ("succeeded", "failed"):
            return 100
        return 100 * audit.done // audit.total if audit.total else 0


class AuditDetailSerializer(AuditSerializer):
    results = ObservationSerializer(source="observations", many=True, read_only=True)

    class Meta(AuditSerializer.Meta):
        fields = [*AuditSerializer.Meta.fields, "results"]
        read_only_fields = fields


class AuditCreateSerializer(serializers.Serializer):
    cluster = NameRelatedField(
        queryset=Cluster.objects.all(),
        required=False,
        allow_null=True,
        help_text="Only this cluster; the whole fleet when left out.",
    )
    concurrency = serializers.IntegerField(min_value=1, max_value=500, required=False)


class UpgradeCheckRequestSerializer(serializers.Serializer):
    cluster = NameRelatedField(queryset=Cluster.objects.all())
    kubelet_version = serializers.CharField(max_length=128, help_text="The version the kubelets would run.")


class UpgradeFindingSerializer(serializers.Serializer):
    gate = serializers.CharField()
    code = serializers.CharField()
    message = serializers.CharField()
    count = serializers.IntegerField()
    nodes = serializers.ListField(child=serializers.CharField(), help_text="The first 50, by name.")


class UpgradeJudgementSerializer(serializers.Serializer):
    would_not_start = serializers.IntegerField(help_text="Nodes whose kubelet would refuse to start.")
    problems = UpgradeFindingSerializer(many=True)
    no_ops = UpgradeFindingSerializer(many=True, help_text="GA gates: setting them does nothing.")
    summary = serializers.CharField()


class UpgradeCheckSerializer(serializers.Serializer):
    cluster = serializers.CharField()
    kubelet_version = serializers.CharField()
    kubelet_minor = serializers.CharField()
    judged_as = serializers.CharField()
    nodes = serializers.IntegerField()
    warnings = serializers.ListField(child=serializers.DictField())
    current = UpgradeJudgementSerializer(help_text="The gates the kubelets run with now.")
    desired = UpgradeJudgementSerializer(help_text="The gates the service wants of them.")
