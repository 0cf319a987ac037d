"""Filters for the audit log, shared by the API and the dashboard's events page."""

from datetime import UTC, timedelta

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField

from ..models import AuditEvent

OBJECT_TYPES = ["audit", "cluster", "credential", "node", "rollout", "user"]
# Real time zones are within UTC-12:00 and UTC+14:00; PostgreSQL refuses offsets of 16 hours.
MAX_OFFSET = timedelta(hours=14)


class BoundedIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 time whose offset a real time zone can have, and that a database can hold."""

    def to_python(self, value):
        moment = super().to_python(value)
        if moment is None:
            return None
        offset = moment.utcoffset()
        if offset is not None and abs(offset) > MAX_OFFSET:
            raise forms.ValidationError("the time zone offset must be between -14:00 and +14:00", code="offset")
        try:
            moment.astimezone(UTC)
        except OverflowError:
            raise forms.ValidationError("the time is out of range", code="range") from None
        return moment


class BoundedIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = BoundedIsoDateTimeField


class EventFilter(django_filters.FilterSet):
    object_type = django_filters.ChoiceFilter(choices=[(t, t) for t in OBJECT_TYPES])
    object_id = django_filters.CharFilter(max_length=64)
    actor = django_filters.CharFilter(max_length=200, help_text="user:NAME, token:NAME, command:NAME or task:NAME")
    actor__icontains = django_filters.CharFilter(field_name="actor", lookup_expr="icontains", max_length=200)
    verb = django_filters.CharFilter(max_length=64)
    created_at__gte = BoundedIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_at__lte = BoundedIsoDateTimeFilter(field_name="created_at", lookup_expr="lte")

    class Meta:
        model = AuditEvent
        fields = []
