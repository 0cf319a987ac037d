"""Filters for the node list: cluster, runtime, modes, release lines, blockers, drift, labels."""

import django_filters
from django.db.models import Q
from django.db.models.fields.json import KeyTransform
from rest_framework.exceptions import ValidationError
from rest_framework.filters import OrderingFilter

from ..decisions import runtime_line
from ..models import ContainerRuntime, Mechanism, Node, ObservedPidNamespace, PidNamespace, RollbackMethod


def kubelet_line_of(value: str) -> str:
    """A kubelet release line as the inventory stores it (``1.6``) from what an operator types:
    ``1.6``, ``v1.6``, ``V1.6``, or a whole version such as ``v1.6.4`` or ``1.7.0-beta.2``."""
    text = value.strip().lower().removeprefix("v")
    parts = text.split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 else text


def runtime_line_of(value: str) -> str:
    """A runtime line as stored (``1.12``, ``17.03``, ``containerd``) from what an operator types:
    the line, ``Docker 1.12``, or a version such as ``1.12.6`` or ``17.03.1-ce``."""
    text = value.strip().lower().removeprefix("docker").strip()
    if text[:1].isdigit():
        return runtime_line("docker", text) or text
    return text


class NodeFilter(django_filters.FilterSet):
    cluster = django_filters.CharFilter(
        field_name="cluster__name", lookup_expr="iexact", help_text="Cluster name (any case)."
    )
    container_runtime = django_filters.ChoiceFilter(choices=ContainerRuntime.choices)
    pid_namespace = django_filters.ChoiceFilter(choices=PidNamespace.choices, help_text="Decided mode.")
    observed_pid_namespace = django_filters.ChoiceFilter(choices=ObservedPidNamespace.choices)
    mechanism = django_filters.ChoiceFilter(choices=[c for c in Mechanism.choices if c[0]])
    rollback_method = django_filters.ChoiceFilter(choices=[c for c in RollbackMethod.choices if c[0]])
    kubelet_minor = django_filters.CharFilter(
        method="filter_kubelet_minor", help_text="Kubelet release line: 1.6, v1.6 or a version such as v1.6.4."
    )
    runtime_line = django_filters.CharFilter(
        method="filter_runtime_line",
        help_text="Docker release line (1.12, 17.03, or a version such as 17.03.1-ce) or a runtime's name.",
    )
    shared_blocker = django_filters.CharFilter()
    isolated_blocker = django_filters.CharFilter()
    managed = django_filters.BooleanFilter()
    reachable = django_filters.BooleanFilter()
    in_cluster = django_filters.BooleanFilter(help_text="Listed by the cluster's Kubernetes API at its last sync.")
    cordoned = django_filters.BooleanFilter(help_text="Unschedulable (Kubernetes API).")
    drift = django_filters.BooleanFilter(help_text="The last audit saw something unexpected.")
    audit_failed = django_filters.BooleanFilter(
        method="filter_audit_failed", help_text="The last reading of the node failed (it has an audit error code)."
    )
    name = django_filters.CharFilter(lookup_expr="icontains")
    label = django_filters.CharFilter(
        method="filter_label",
        help_text="key=value (label equals) or key (label present). Repeat the parameter to combine.",
    )

    class Meta:
        model = Node
        fields = []

    def filter_audit_failed(self, queryset, name, value):
        failed = ~Q(audit_error_code="")
        return queryset.filter(failed) if value else queryset.exclude(failed)

    def filter_kubelet_minor(self, queryset, name, value):
        return queryset.filter(kubelet_minor=kubelet_line_of(value))

    def filter_runtime_line(self, queryset, name, value):
        return queryset.filter(runtime_line=runtime_line_of(value))

    def filter_label(self, queryset, name, value):
        for index, term in enumerate(self.request.query_params.getlist("label") if self.request else [value]):
            key, sep, label_value = term.partition("=")
            key = key.strip()
            if not key or len(key) > 317 or len(label_value) > 63 or "\x00" in term:
                raise ValidationError({"label": [f"{term[:80]!r} must be key=value or key"]})
            if sep:
                alias = f"_label_{index}"
                queryset = queryset.alias(**{alias: KeyTransform(key, "labels")}).filter(**{alias: label_value})
            else:
                queryset = queryset.filter(labels__has_key=key)
        return queryset


class NodeOrdering(OrderingFilter):
    """``?ordering=kubelet_version`` (or ``runtime_version``) sorts in version order, through the
    nodes' stored sort keys: v1.6 before v1.10."""

    COLUMNS = {"kubelet_version": "kubelet_order", "runtime_version": "runtime_order"}

    def get_ordering(self, request, queryset, view):
        ordering = super().get_ordering(request, queryset, view)
        if not ordering:
            return ordering
        return [
            ("-" if term.startswith("-") else "") + self.COLUMNS.get(term.lstrip("-"), term.lstrip("-"))
            for term in ordering
        ]
