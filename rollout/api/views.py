"""Rollout API: preview, create, and the operator's actions (202), plus the event log."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from core.api.serializers import EventSerializer
from core.events import actor_of
from core.models import AuditEvent
from core.roles import IsOperator, IsViewer

from .. import selectors, services
from ..models import NodeOperation, Rollout
from ..selectors import rollouts_with_counts
from ..tasks import rollout_kick
from .serializers import (
    OperationSerializer,
    PreviewSerializer,
    RolloutDetailSerializer,
    RolloutInputSerializer,
    RolloutSerializer,
)


class RolloutViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Rollouts. Viewers read and preview; operators create them and act on them."""

    queryset = Rollout.objects.select_related("cluster").order_by("-created_at", "-id")
    serializer_class = RolloutSerializer
    filterset_fields = ["status", "intent", "cluster__name"]

    def get_permissions(self):
        if self.action in ("list", "retrieve", "preview"):
            return [IsViewer()]
        return [IsOperator()]

    def get_queryset(self):
        return rollouts_with_counts(super().get_queryset())

    def get_serializer_class(self):
        return RolloutDetailSerializer if self.action == "retrieve" else RolloutSerializer

    def retrieve(self, request, *args, **kwargs):
        rollout = self.get_object()
        rollout.counts = selectors.rollout_counts(rollout)
        rollout.waves = selectors.rollout_waves(rollout)
        rollout.operations_list = list(
            NodeOperation.objects.filter(rollout=rollout).select_related("node").order_by("phase", "wave", "node__name")
        )
        rollout.events_list = list(
            AuditEvent.objects.filter(object_type="rollout", object_id=str(rollout.pk)).order_by("-created_at", "-id")[
                :500
            ]
        )
        data = RolloutSerializer(rollout, context={"request": request}).data
        data["counts"] = rollout.counts
        data["waves"] = rollout.waves
        data["operations"] = OperationSerializer(rollout.operations_list, many=True).data
        data["events"] = EventSerializer(rollout.events_list, many=True).data
        return Response(data)

    def _accepted(self, request, rollout):
        rollout = self.get_queryset().get(pk=rollout.pk)
        data = RolloutSerializer(rollout, context={"request": request}).data
        return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": data["url"]})

    @extend_schema(request=RolloutInputSerializer, responses={202: RolloutSerializer, 409: None})
    def create(self, request, *args, **kwargs):
        serializer = RolloutInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            rollout = services.rollout_submit(actor=actor_of(request), data=data, start=data["start"])
            if data["start"]:
                rollout_kick(rollout.pk)
        except services.RolloutError as exc:
            return Response(exc.errors, status=exc.status_code)
        return self._accepted(request, rollout)

    @extend_schema(request=RolloutInputSerializer, responses={200: PreviewSerializer})
    @action(detail=False, methods=["post"])
    def preview(self, request):
        """What a rollout would do (dry run): targets with their decisions and flag changes, waves,
        skipped nodes and why, predicted duration. Writes nothing."""
        serializer = RolloutInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        preview = services.rollout_preview(
            cluster=data["cluster"], selector=data["selector"], intent=data["intent"], strategy=data["strategy"]
        )
        return Response(preview)

    def _act(self, request, service, kick=True):
        rollout = self.get_object()
        try:
            rollout = service(actor=actor_of(request), rollout=rollout)
        except services.RolloutError as exc:
            return Response(exc.errors, status=exc.status_code)
        if kick:
            rollout_kick(rollout.pk)
        return self._accepted(request, rollout)

    @extend_schema(request=None, responses={202: RolloutSerializer, 409: None})
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        return self._act(request, services.rollout_start)

    @extend_schema(request=None, responses={202: RolloutSerializer, 409: None})
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        return self._act(request, services.rollout_pause, kick=False)

    @extend_schema(request=None, responses={202: RolloutSerializer, 409: None})
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self._act(request, services.rollout_resume)

    @extend_schema(request=None, responses={202: RolloutSerializer, 409: None})
    @action(detail=True, methods=["post"])
    def abort(self, request, pk=None):
        return self._act(request, services.rollout_abort, kick=False)

    @extend_schema(request=None, responses={202: RolloutSerializer, 409: None})
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        return self._act(request, services.rollout_approve)

    @extend_schema(request=None, responses={202: RolloutSerializer, 409: None})
    @action(detail=True, methods=["post"])
    def rollback(self, request, pk=None):
        return self._act(request, services.rollout_rollback)
