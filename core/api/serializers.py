"""The audit log's read shape; webhooks and their deliveries."""

from rest_framework import serializers

from ..events import actor_of
from ..models import AuditEvent, Webhook, WebhookDelivery
from ..webhooks import EVENT_KINDS, webhook_save


class EventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ["id", "created_at", "actor", "verb", "object_type", "object_id", "object_repr", "before", "after"]
        read_only_fields = fields


class WebhookSerializer(serializers.ModelSerializer):
    """A webhook. ``secret`` is write-only (required when it is created)."""

    secret = serializers.CharField(
        write_only=True, min_length=16, max_length=200, help_text="Signs each delivery. Never shown again."
    )
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_KINDS), min_length=1, max_length=len(EVENT_KINDS)
    )

    class Meta:
        model = Webhook
        fields = ["id", "name", "url", "secret", "events", "format", "active", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]

    def validate_url(self, value):
        if not value.startswith(("https://", "http://")):
            raise serializers.ValidationError("an http:// or https:// URL")
        return value

    def validate_events(self, value):
        return sorted(set(value), key=EVENT_KINDS.index)

    def create(self, validated_data):
        return webhook_save(actor=actor_of(self.context["request"]), hook=Webhook(), **validated_data)

    def update(self, instance, validated_data):
        return webhook_save(actor=actor_of(self.context["request"]), hook=instance, **validated_data)


class WebhookDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "kind",
            "status",
            "attempts",
            "response_code",
            "error",
            "payload",
            "next_try_at",
            "created_at",
            "delivered_at",
        ]
        read_only_fields = fields
