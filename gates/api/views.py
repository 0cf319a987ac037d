"""The decision engine and the feature-gate catalog over HTTP. Writes nothing."""

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from core.catalog import catalog
from core.roles import IsViewer
from gates.catalog import STAGES, Gate, minor_label, parse_minor
from gates.gatecheck import GateInputError, validate
from gates.plans import decide

from .serializers import (
    CatalogGateSerializer,
    DecisionSerializer,
    EvaluateSerializer,
    GateCheckSerializer,
    GateValidateSerializer,
)


class EvaluateView(APIView):
    """Decide a node's PID-namespace mode from facts. Writes nothing."""

    permission_classes = [IsViewer]

    @extend_schema(
        request=EvaluateSerializer,
        responses={200: DecisionSerializer},
        examples=[
            OpenApiExample(
                "Kubelet 1.6 with CRI disabled, asked to share",
                value={
                    "kubelet_version": "v1.6.4",
                    "runtime_version": "1.12.6",
                    "kubelet_flags": {"enable-cri": "false"},
                    "intent": "shared",
                },
                request_only=True,
            )
        ],
    )
    def post(self, request):
        serializer = EvaluateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        return Response(decide(data["facts"], data["plan"], data["intent"]).as_dict())


class GateValidateView(APIView):
    """Would a kubelet of this version start with these feature gates? Problems say why not; warnings
    say what to change anyway. Writes nothing."""

    permission_classes = [IsViewer]

    @extend_schema(
        request=GateValidateSerializer,
        responses={200: GateCheckSerializer},
        examples=[
            OpenApiExample(
                "A gate removed in 1.19",
                value={"kubelet_version": "v1.19.0", "feature_gates": {"PodShareProcessNamespace": True}},
                request_only=True,
            )
        ],
    )
    def post(self, request):
        serializer = GateValidateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            check = validate(data["kubelet_version"], data["feature_gates"], catalog())
        except GateInputError as exc:
            raise ValidationError({exc.field: [str(exc)]}) from None
        return Response(check.as_dict())


def gate_as_dict(gate: Gate, at=None) -> dict:
    state = gate.state_at(at) if at is not None else None
    return {
        "name": gate.name,
        "first_release": minor_label(gate.first_release),
        "removed_in": minor_label(gate.removed_in) if gate.removed_in else None,
        "locked_from": minor_label(gate.locked_from) if gate.locked_from else None,
        "stages": [
            {
                "stage": s.stage,
                "default": s.default,
                "start": minor_label(s.start),
                "end": minor_label(s.end) if s.end else None,
            }
            for s in gate.stages
        ],
        "at": None if state is None else {**state.__dict__, "release": minor_label(at)},
    }


def catalog_query(params) -> tuple[str, str | None, tuple | None]:
    """(search text, stage, release) from a query string, or a ValidationError naming the field."""
    text = params.get("search", "")[:100]
    stage = params.get("stage") or None
    if stage is not None and stage not in (*STAGES, "removed"):
        raise ValidationError({"stage": [f"one of {', '.join((*STAGES, 'removed'))}"]})
    at = None
    if params.get("at"):
        try:
            at = parse_minor(params["at"])
        except ValueError:
            raise ValidationError({"at": ["a release line such as 1.19"]}) from None
    return text, stage, at


def inline_catalog_serializer():
    from drf_spectacular.utils import inline_serializer

    return inline_serializer(
        "GateCatalog",
        {
            "releases": serializers.ListField(child=serializers.CharField(), help_text="Oldest and newest release."),
            "count": serializers.IntegerField(),
            "gates": CatalogGateSerializer(many=True),
        },
    )


class GateCatalogView(APIView):
    """Every Kubernetes feature gate the catalog knows, searched and filtered by stage at a release."""

    permission_classes = [IsViewer]

    @extend_schema(
        parameters=[
            OpenApiParameter("search", str, description="Part of the name, any case."),
            OpenApiParameter("stage", str, enum=[*STAGES, "removed"], description="Stage at ?at= (or ever)."),
            OpenApiParameter("at", str, description="A release line such as 1.19: gates a kubelet of it knows."),
        ],
        responses={200: inline_catalog_serializer()},
        operation_id="v1_gates_catalog_list",
    )
    def get(self, request):
        text, stage, at = catalog_query(request.query_params)
        known = catalog()
        gates = known.search(text, stage, at)
        return Response(
            {
                "releases": [minor_label(known.oldest), minor_label(known.newest)],
                "count": len(gates),
                "gates": [gate_as_dict(g, at) for g in gates],
            }
        )


class GateDetailView(APIView):
    """One gate: its stages from alpha to removal, and its lock."""

    permission_classes = [IsViewer]

    @extend_schema(operation_id="v1_gates_catalog_gate", responses={200: CatalogGateSerializer})
    def get(self, request, name):
        gate = catalog().get(name[:100])
        if gate is None:
            raise NotFound(f"no feature gate named {name[:100]!r}")
        return Response(gate_as_dict(gate))
