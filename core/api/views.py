"""The audit log, read through the API; webhooks (admins)."""

from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action

from ..events import actor_of
from ..models import AuditEvent, Webhook, WebhookDelivery
from ..roles import IsAdmin, IsViewer
from ..webhooks import webhook_delete
from .filters import EventFilter
from .serializers import EventSerializer, WebhookDeliverySerializer, WebhookSerializer


class EventViewSet(viewsets.ReadOnlyModelViewSet):
    """The audit log: every change with its actor, before and after. Filter by object and actor."""

    queryset = AuditEvent.objects.order_by("-created_at", "-id")
    serializer_class = EventSerializer
    permission_classes = [IsViewer]
    filterset_class = EventFilter


class WebhookViewSet(viewsets.ModelViewSet):
    """Webhooks (admins): where to send which events (awaiting-approval, failed, rolled-back,
    succeeded, drift-found), signed with the hook's secret; ``deliveries/`` is each one's log."""

    queryset = Webhook.objects.order_by("name")
    serializer_class = WebhookSerializer
    permission_classes = [IsAdmin]

    def perform_destroy(self, instance):
        webhook_delete(actor=actor_of(self.request), hook=instance)

    @extend_schema(responses={200: WebhookDeliverySerializer(many=True)})
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        """The hook's deliveries, newest first: status, tries, the receiver's last answer."""
        hook = self.get_object()
        page = self.paginate_queryset(WebhookDelivery.objects.filter(webhook=hook).order_by("-created_at", "-id"))
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)
