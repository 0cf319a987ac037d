"""Rollout API: preview, create, and the operator's actions (202). Thin: validate, call a service;
domain errors become answers in the API's exception handler (:mod:`core.exceptions`)."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from core.api.serializers import EventSerializer
from core.events import actor_of
from core.models import AuditEvent
from core.roles import IsOperator, IsViewer

from .. import selectors, transitions
from ..models import NodeOperation, Rollout
from ..selectors import rollouts_with_counts
from ..states import ROLLOUT
from ..tasks import rollout_kick
from .serializers import (
    OperationSerializer,
    PreviewSerializer,
    RolloutDetailSerializer,
    RolloutInputSerializer,
    RolloutSerializer,
)

CONFLICT = OpenApiResponse(description="The rollout is not in a state that allows this, or its nodes are busy.")


def _action_doc(name: str) -> str:
    transition = ROLLOUT[name]
    return f"From {', '.join(transition.sources)} to {transition.target}: {transition.description}."


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
        data["timeline"] = RolloutDetailSerializer().get_timeline(rollout)
        data["operations"] = OperationSerializer(rollout.operations_list, many=True).data
        data["events"] = EventSerializer(rollout.events_list, many=True).data
        return Response(data)

    def _accepted(self, request, rollout):
        rollout = self.get_queryset().get(pk=rollout.pk)
        data = RolloutSerializer(rollout, context={"request": request}).data
        return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": str(data["url"])})

    @extend_schema(request=RolloutInputSerializer, responses={202: RolloutSerializer, 409: CONFLICT})
    def create(self, request, *args, **kwargs):
        serializer = RolloutInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        rollout = transitions.rollout_submit(actor=actor_of(request), data=data, start=data["start"])
        if data["start"]:
            rollout_kick(rollout.pk)
        return self._accepted(request, rollout)

    @extend_schema(request=RolloutInputSerializer, responses={200: PreviewSerializer})
    @action(detail=False, methods=["post"])
    def preview(self, request):
        """What a rollout would do (dry run): targets with their decisions and flag changes, waves,
        skipped nodes and why, predicted duration. Writes nothing."""
        serializer = RolloutInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        preview = selectors.rollout_preview(
            cluster=data["cluster"], selector=data["selector"], change=data["change"], strategy=data["strategy"]
        )
        return Response(preview)

    def _act(self, request, name: str):
        rollout = transitions.ACTIONS[name](actor=actor_of(request), rollout=self.get_object())
        if name in transitions.KICKS:
            rollout_kick(rollout.pk)
        return self._accepted(request, rollout)

    @extend_schema(request=None, responses={202: RolloutSerializer, 409: CONFLICT}, description=_action_doc("start"))
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        return self._act(request, "start")

    @extend_schema(request=None, responses={202: RolloutSerializer, 409: CONFLICT}, description=_action_doc("pause"))
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        return self._act(request, "pause")

    @extend_schema(request=None, responses={202: RolloutSerializer, 409: CONFLICT}, description=_action_doc("resume"))
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self._act(request, "resume")

    @extend_schema(request=None, responses={202: RolloutSerializer, 409: CONFLICT}, description=_action_doc("abort"))
    @action(detail=True, methods=["post"])
    def abort(self, request, pk=None):
        return self._act(request, "abort")

    @extend_schema(request=None, responses={202: RolloutSerializer, 409: CONFLICT}, description=_action_doc("approve"))
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        return self._act(request, "approve")

    @extend_schema(request=None, responses={202: RolloutSerializer, 409: CONFLICT}, description=_action_doc("rollback"))
    @action(detail=True, methods=["post"])
    def rollback(self, request, pk=None):
        return self._act(request, "rollback")
