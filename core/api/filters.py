"""Filters for the audit log, shared by the API and the dashboard's events page."""

import django_filters

from ..models import AuditEvent

OBJECT_TYPES = ["audit", "cluster", "credential", "node", "rollout", "user"]


class EventFilter(django_filters.FilterSet):
    object_type = django_filters.ChoiceFilter(choices=[(t, t) for t in OBJECT_TYPES])
    object_id = django_filters.CharFilter()
    actor = django_filters.CharFilter(help_text="user:NAME, token:NAME, command:NAME or task:NAME")
    actor__icontains = django_filters.CharFilter(field_name="actor", lookup_expr="icontains")
    verb = django_filters.CharFilter()
    created_at__gte = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_at__lte = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lte")

    class Meta:
        model = AuditEvent
        fields = []
