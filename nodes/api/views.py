"""Inventory API: clusters, nodes, bulk import, fleet summary. Thin: validate, call a service."""

from django.db import transaction
from django.db.models import Count, Prefetch
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from core.catalog import catalog
from core.events import actor_of
from core.hostile import echo
from core.roles import IsAdmin, IsOperator, IsViewer, ReadViewerWriteAdmin
from gates.gatecheck import GateInputError

from .. import audits, importing, selectors, services
from ..models import Audit, Cluster, DockerCredential, NodeObservation
from ..tasks import audit_enqueue
from ..tasks import cluster_sync as cluster_sync_task
from ..upgrade import upgrade_check
from .filters import NodeFilter, NodeOrdering
from .serializers import (
    AuditCreateSerializer,
    AuditDetailSerializer,
    AuditSerializer,
    ClusterSerializer,
    ClusterSyncSerializer,
    CredentialSerializer,
    FleetSummarySerializer,
    ImportRequestSerializer,
    ImportResultSerializer,
    NodeDetailSerializer,
    NodeSerializer,
    ObservationSerializer,
    UpgradeCheckRequestSerializer,
    UpgradeCheckSerializer,
)

MAX_IMPORT_ROWS = 200_000


class ClusterViewSet(viewsets.ModelViewSet):
    """Clusters. Viewers read; admins create, change and delete (a cluster with nodes cannot be deleted)."""

    queryset = Cluster.objects.select_related("docker_credential").annotate(node_count=Count("nodes")).order_by("name")
    serializer_class = ClusterSerializer
    permission_classes = [ReadViewerWriteAdmin]
    filterset_fields = ["name", "plan"]
    ordering_fields = ["name", "plan", "created_at"]
    lookup_value_regex = "[^/]+"

    def get_object(self):
        """A cluster by id, or by name."""
        key = self.kwargs[self.lookup_field]
        if not key.isdigit():
            self.kwargs = {
                **self.kwargs,
                self.lookup_field: Cluster.objects.filter(name=key).values_list("pk", flat=True).first() or 0,
            }
        return super().get_object()

    def get_permissions(self):
        if self.action == "sync":
            return [IsOperator()]
        return super().get_permissions()

    def perform_destroy(self, instance):
        services.cluster_delete(actor=actor_of(self.request), cluster=instance)

    @extend_schema(request=None, responses={202: ClusterSyncSerializer})
    @action(detail=True, methods=["post"])
    def sync(self, request, pk=None):
        """List the cluster's nodes from its Kubernetes API into the inventory, on a worker (operator)."""
        cluster = self.get_object()
        if not cluster.has_kube_api:
            raise ValidationError({"kube_api_server": [f"cluster {cluster.name} has no Kubernetes API to sync from"]})
        actor = actor_of(request)
        transaction.on_commit(lambda: cluster_sync_task.delay(cluster.pk, actor))
        return Response({"cluster": cluster.name, "status": "queued"}, status=status.HTTP_202_ACCEPTED)


class NodeViewSet(viewsets.ModelViewSet):
    """Nodes with their observed facts and decided PID-namespace mode. The detail embeds the decision."""

    queryset = selectors.node_list()
    serializer_class = NodeSerializer
    permission_classes = [ReadViewerWriteAdmin]
    filterset_class = NodeFilter
    filter_backends = [DjangoFilterBackend, NodeOrdering]
    ordering_fields = ["name", "kubelet_version", "runtime_version", "pid_namespace", "updated_at", "last_audit_at"]
    ordering = ["cluster__name", "name"]

    def get_serializer_class(self):
        return (
            NodeDetailSerializer
            if self.action in ("retrieve", "create", "update", "partial_update")
            else NodeSerializer
        )

    def get_permissions(self):
        if self.action == "bulk_import":
            return [IsAdmin()]
        return super().get_permissions()

    def perform_destroy(self, instance):
        services.node_delete(actor=actor_of(self.request), node=instance)

    @extend_schema(responses={200: ObservationSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def observations(self, request, pk=None):
        """The node's audit history, newest first: facts seen, observed mode, errors and drift."""
        node = self.get_object()
        queryset = (
            NodeObservation.objects.filter(node=node).select_related("node__cluster").order_by("-observed_at", "-id")
        )
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(ObservationSerializer(page, many=True).data)

    @extend_schema(request=ImportRequestSerializer, responses={200: ImportResultSerializer})
    @action(detail=False, methods=["post"], url_path="import")
    def bulk_import(self, request):
        """Create or update many nodes at once, all or nothing. Errors come by index:
        ``{"nodes": {"3": {"kubelet_version": ["..."]}}}``."""
        body = request.data
        if isinstance(body, list):
            body = {"nodes": body}
        if not isinstance(body, dict):
            raise ValidationError({"non_field_errors": ["expected an object with a 'nodes' list, or a list of nodes"]})
        unknown = set(body) - {"nodes", "clusters"}
        if unknown:
            raise ValidationError({key: ["unknown field"] for key in sorted(unknown)})
        nodes, clusters = body.get("nodes"), body.get("clusters", [])
        if not isinstance(nodes, list):
            raise ValidationError({"nodes": ["this field is required and must be a list"]})
        if not isinstance(clusters, list):
            raise ValidationError({"clusters": ["must be a list"]})
        if len(nodes) > MAX_IMPORT_ROWS:
            raise ValidationError({"nodes": [f"at most {MAX_IMPORT_ROWS} nodes per import"]})
        result = importing.nodes_import(actor=actor_of(request), nodes=nodes, clusters=clusters)
        return Response(ImportResultSerializer(result).data)


class FleetSummaryView(APIView):
    """Counts by decided mode, mechanism, observed mode, rollback method and blocker, per cluster."""

    permission_classes = [IsViewer]

    @extend_schema(
        parameters=[OpenApiParameter("cluster", str, description="Only this cluster (by name).")],
        responses={200: FleetSummarySerializer},
    )
    def get(self, request):
        cluster = None
        name = request.query_params.get("cluster")
        if name is not None:
            cluster = selectors.cluster_named(name)
            if cluster is None:
                raise ValidationError({"cluster": [f"no cluster named {echo(name)}"]})
        return Response(selectors.fleet_summary(cluster=cluster))


class CredentialViewSet(viewsets.ModelViewSet):
    """TLS credentials for tcp:// Docker endpoints. Admins only; keys are never returned."""

    queryset = DockerCredential.objects.order_by("name")
    serializer_class = CredentialSerializer
    permission_classes = [IsAdmin]
    filterset_fields = ["name"]

    def perform_destroy(self, instance):
        services.credential_delete(actor=actor_of(self.request), credential=instance)


class AuditViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Audits read the nodes themselves. Viewers read them; operators start them (202)."""

    queryset = Audit.objects.select_related("cluster").order_by("-created_at", "-id")
    serializer_class = AuditSerializer
    filterset_fields = ["status", "cluster__name"]

    def get_permissions(self):
        return [IsOperator()] if self.action == "create" else [IsViewer()]

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.action == "retrieve":
            queryset = queryset.prefetch_related(
                Prefetch("observations", NodeObservation.objects.select_related("node__cluster").order_by("node__name"))
            )
        return queryset

    def get_serializer_class(self):
        if self.action == "create":
            return AuditCreateSerializer
        return AuditDetailSerializer if self.action == "retrieve" else AuditSerializer

    @extend_schema(request=AuditCreateSerializer, responses={202: AuditSerializer, 409: None})
    def create(self, request, *args, **kwargs):
        serializer = AuditCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            audit = audits.audit_create(actor=actor_of(request), **serializer.validated_data)
            audit_enqueue(audit)
        data = AuditSerializer(audit, context={"request": request}).data
        return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": str(data["url"])})


class UpgradeCheckView(APIView):
    """Before moving a cluster's kubelets to a new version: which nodes' current and desired feature
    gates would stop the new kubelet from starting (per problem), and which become no-ops."""

    permission_classes = [IsViewer]

    @extend_schema(request=UpgradeCheckRequestSerializer, responses={200: UpgradeCheckSerializer})
    def post(self, request):
        serializer = UpgradeCheckRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            result = upgrade_check(cluster=data["cluster"], kubelet_version=data["kubelet_version"], catalog=catalog())
        except GateInputError as exc:
            raise ValidationError({exc.field: [str(exc)]}) from None
        return Response(result)
