"""Dashboard pages for the inventory: fleet overview, node list, node detail. Read-only and thin:
selectors do the reads; every page needs the viewer role (checked here, on the server)."""

from __future__ import annotations

from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404
from django.views.generic import TemplateView

from rollout.models import NodeOperation, Rollout
from rollout.roles import VIEWER, has_role, user_role

from . import selectors
from .api.filters import NodeFilter
from .decisions import node_decision
from .models import Audit, NodeObservation

SORTABLE = {
    "name",
    "-name",
    "kubelet_version",
    "-kubelet_version",
    "runtime_version",
    "-runtime_version",
    "pid_namespace",
    "-pid_namespace",
    "observed_pid_namespace",
    "-observed_pid_namespace",
}


class ViewerPage(LoginRequiredMixin, TemplateView):
    """A page for signed-in users with at least the viewer role."""

    def dispatch(self, request, *args, **kwargs):
        if request.user.is_authenticated and not has_role(request.user, VIEWER):
            raise PermissionDenied("You need the viewer role.")
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["role"] = user_role(self.request.user)
        return context


class OverviewPage(ViewerPage):
    template_name = "dashboard/overview.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["summary"] = selectors.fleet_summary()
        context["drifting"] = list(selectors.node_list().filter(drift=True).order_by("cluster__name", "name")[:20])
        context["rollouts"] = list(
            Rollout.objects.select_related("cluster")
            .filter(status__in=["running", "paused", "awaiting-approval", "rolling-back"])
            .order_by("-created_at")[:10]
        )
        context["audits"] = list(Audit.objects.select_related("cluster").order_by("-created_at")[:5])
        return context


class NodeListPage(ViewerPage):
    template_name = "dashboard/nodes.html"
    page_size = 50

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        filterset = NodeFilter(self.request.GET, queryset=selectors.node_list(), request=None)
        nodes = filterset.qs if filterset.is_valid() else selectors.node_list().none()
        ordering = self.request.GET.get("ordering", "name")
        nodes = nodes.order_by(*(["cluster__name", ordering] if ordering in SORTABLE else ["cluster__name", "name"]))
        page = Paginator(nodes, self.page_size).get_page(self.request.GET.get("page"))
        query = self.request.GET.copy()
        query.pop("page", None)
        context.update(filterset=filterset, page=page, query=query.urlencode(), ordering=ordering)
        return context


class NodeDetailPage(ViewerPage):
    template_name = "dashboard/node.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        node = get_object_or_404(selectors.node_list(), pk=kwargs["pk"])
        decision, why = node_decision(node.facts(), node.cluster.plan)
        context.update(
            node=node,
            decision=decision,
            decision_error=why,
            observations=list(NodeObservation.objects.filter(node=node).order_by("-observed_at", "-id")[:20]),
            operations=list(NodeOperation.objects.filter(node=node).select_related("rollout").order_by("-id")[:20]),
        )
        return context
