from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from core.roles import IsViewer
from gates.plans import decide

from .serializers import DecisionSerializer, EvaluateSerializer


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
