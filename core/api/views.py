"""The audit log, read through the API."""

from rest_framework import viewsets

from ..models import AuditEvent
from ..roles import IsViewer
from .filters import EventFilter
from .serializers import EventSerializer


class EventViewSet(viewsets.ReadOnlyModelViewSet):
    """The audit log: every change with its actor, before and after. Filter by object and actor."""

    queryset = AuditEvent.objects.order_by("-created_at", "-id")
    serializer_class = EventSerializer
    permission_classes = [IsViewer]
    filterset_class = EventFilter
