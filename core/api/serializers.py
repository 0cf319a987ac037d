"""The audit log's read shape."""

from rest_framework import serializers

from ..models import AuditEvent


class EventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ["id", "created_at", "actor", "verb", "object_type", "object_id", "object_repr", "before", "after"]
        read_only_fields = fields
