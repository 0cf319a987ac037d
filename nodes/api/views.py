"""Inventory API: clusters, nodes, bulk import, fleet summary. Thin: validate, call a service."""

from django.db.models import Count
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from rollout.events import actor_of
from rollout.roles import IsAdmin, IsViewer, ReadViewerWriteAdmin

from .. import selectors, services
from ..models import Cluster
from .filters import NodeFilter
from .serializers import (
    ClusterSerializer,
    FleetSummarySerializer,
    ImportRequestSerializer,
    ImportResultSerializer,
    NodeDetailSerializer,
    NodeSerializer,
)

MAX_IMPORT_ROWS = 200_000


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


class ClusterViewSet(viewsets.ModelViewSet):
    """Clusters. Viewers read; admins create, change and delete (a cluster with nodes cannot be deleted)."""

    queryset = Cluster.objects.annotate(node_count=Count("nodes")).order_by("name")
    serializer_class = ClusterSerializer
    permission_classes = [ReadViewerWriteAdmin]
    filterset_fields = ["name", "plan"]
    ordering_fields = ["name", "plan", "created_at"]

    def perform_destroy(self, instance):
        try:
            services.cluster_delete(actor=actor_of(self.request), cluster=instance)
        except services.InventoryError as exc:
            raise Conflict(exc.errors) from None


class NodeViewSet(viewsets.ModelViewSet):
    """Nodes with their observed facts and decided PID-namespace mode. The detail embeds the decision."""

    queryset = selectors.node_list()
    serializer_class = NodeSerializer
    permission_classes = [ReadViewerWriteAdmin]
    filterset_class = NodeFilter
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
        try:
            result = services.nodes_import(actor=actor_of(request), nodes=nodes, clusters=clusters)
        except services.InventoryError as exc:
            raise ValidationError(exc.errors) from None
        return Response(ImportResultSerializer(result).data)


class FleetSummaryView(APIView):
    """Counts by decided mode, mechanism, observed mode, rollback method and blocker, per cluster."""

    permission_classes = [IsViewer]

    @extend_schema(
        parameters=[OpenApiParameter("cluster", str, description="Only this cluster (by name).")],
        responses={200: FleetSummarySerializer},
    )
    def get(self, request):
        nodes = selectors.node_list()
        cluster = request.query_params.get("cluster")
        if cluster is not None:
            if not Cluster.objects.filter(name=cluster).exists():
                raise ValidationError({"cluster": [f"no cluster named {cluster[:80]!r}"]})
            nodes = nodes.filter(cluster__name=cluster)
        return Response(selectors.fleet_summary(nodes=nodes))
