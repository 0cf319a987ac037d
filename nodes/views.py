"""Dashboard pages for the inventory: fleet overview, node list, node detail, what-if, audits.
Thin: selectors do the reads and services the writes; every page needs the viewer role and every
write the operator role (checked here, on the server)."""

from __future__ import annotations

import contextlib

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Q
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST
from rest_framework.exceptions import ValidationError

from core.catalog import catalog
from core.pages import ViewerPage
from core.roles import OPERATOR, has_role
from gates.api.views import catalog_query
from gates.catalog import STAGES, minor_label, parse_minor
from gates.gatecheck import GateInputError, validate
from gates.plans import PLANS
from gates.policy import BLOCKER_WORDS, ISOLATED, SHARED
from rollout.models import ROLLOUT_ACTIVE_STATES, NodeOperation, Rollout
from rollout.selectors import fingerprint, rollouts_with_counts

from . import audits, selectors, services
from .api.filters import NodeFilter, kubelet_line_of, runtime_line_of
from .charts import gate_strip, history_chart, stacked_bar
from .decisions import expected_mode, node_decision
from .models import AUDIT_ACTIVE_STATES, Audit, Cluster, Node, NodeObservation
from .tasks import audit_enqueue
from .upgrade import upgrade_check
from .whatif import LISTED, Change, WhatIfError, whatif

# Sort keys offered by the node list, and the columns behind them (versions sort in version order).
SORTABLE = {
    "name": "name",
    "kubelet_version": "kubelet_order",
    "runtime_version": "runtime_order",
    "pid_namespace": "pid_namespace",
    "observed_pid_namespace": "observed_pid_namespace",
}


class OverviewPage(ViewerPage):
    """The fleet at a glance. htmx asks for the live part again every few seconds with the
    fingerprint of what it shows, and gets 204 No Content while nothing changed: the page is not
    redrawn (nor the keyboard focus lost) for nothing."""

    template_name = "nodes/overview.html"

    def get(self, request, *args, **kwargs):
        context = self.get_context_data(**kwargs)
        if request.htmx and request.GET.get("since") == context["fingerprint"]:
            return HttpResponse(status=204)
        return self.render_to_response(context)

    def get_template_names(self):
        return ["nodes/_overview_live.html"] if self.request.htmx else [self.template_name]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        clusters = list(Cluster.objects.order_by("name"))
        name = self.request.GET.get("cluster", "")
        scope = next((c for c in clusters if c.name == name), None)
        fleet = selectors.fleet_overview(cluster=scope)
        summary = fleet["summary"]
        bars = {c["name"]: stacked_bar(c["name"], c["by_pid_namespace"]) for c in summary["clusters"]}
        rollouts = rollouts_with_counts(Rollout.objects.select_related("cluster")).filter(
            status__in=ROLLOUT_ACTIVE_STATES
        )
        audits = Audit.objects.select_related("cluster")
        if scope is not None:
            rollouts = rollouts.filter(cluster=scope)
            audits = audits.filter(Q(cluster=scope) | Q(cluster__isnull=True))
        rollouts = list(rollouts.order_by("-created_at")[:10])
        audits = list(audits.order_by("-created_at")[:5])
        shown = (
            fleet,
            [(r.pk, r.status, r.reason, r.ops_total, r.ops_done, r.ops_failed) for r in rollouts],
            [(a.pk, a.status, a.total, a.done, a.failed, a.drifted) for a in audits],
        )
        context.update(
            **fleet,
            clusters=[c.name for c in clusters],
            scope=scope.name if scope else "",
            scope_error=f"no cluster named {name[:100]!r}; showing the whole fleet" if name and not scope else "",
            bars=bars,
            rollouts=rollouts,
            audits=audits,
            poll_seconds=settings.PIDNS_OVERVIEW_REFRESH_SECONDS,
            fingerprint=fingerprint(shown),
        )
        return context


class NodeListPage(ViewerPage):
    template_name = "nodes/nodes.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        filterset = NodeFilter(self.request.GET, queryset=selectors.node_list(), request=None)
        nodes = filterset.qs if filterset.is_valid() else selectors.node_list().none()
        ordering = self.request.GET.get("ordering", "name")
        key = SORTABLE.get(ordering.removeprefix("-"))
        if key is None:
            ordering, key = "name", "name"
        column = f"-{key}" if ordering.startswith("-") else key
        nodes = nodes.order_by("cluster__name", column, "name")
        context.update(filterset=filterset, ordering=ordering, **self.paged(nodes), **self._choices())
        return context

    def _choices(self) -> dict:
        """What the filters offer: the clusters and the release lines the fleet has (from the kept
        counts), each with the one chosen, so that a filter is picked rather than typed."""
        counts = selectors.node_counts()
        kubelets = sorted({row["kubelet_minor"] for row in counts if row["kubelet_minor"]}, key=selectors.version_key)
        runtimes = sorted({row["runtime_line"] for row in counts if row["runtime_line"]}, key=selectors.version_key)
        get = self.request.GET
        return {
            "cluster_names": list(Cluster.objects.order_by("name").values_list("name", flat=True)),
            "kubelet_lines": kubelets,
            "runtime_lines": runtimes,
            "chosen_kubelet": kubelet_line_of(get.get("kubelet_minor", "")),
            "chosen_runtime": runtime_line_of(get.get("runtime_line", "")),
            "chosen_cluster": get.get("cluster", ""),
            "blockers": sorted(BLOCKER_WORDS.items()),
        }


class NodeDetailPage(ViewerPage):
    template_name = "nodes/node.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        node = get_object_or_404(selectors.node_list(), pk=kwargs["pk"])
        decision, why = node_decision(node.facts(), node.cluster.plan)
        towards = []
        if decision is not None:
            for intent in (SHARED, ISOLATED):
                target, _ = node_decision(node.facts(), node.cluster.plan, intent)
                towards.append({"intent": intent, "decision": target})
        gate_check, next_check = gate_checks(node)
        context.update(
            node=node,
            desired_gates=node.desired_gate_map(),
            gate_check=gate_check,
            next_check=next_check,
            expected_mode=expected_mode(node.facts(), node.desired(), node.cluster.plan),
            decision=decision,
            decision_error=why,
            towards=towards,
            can_act=has_role(self.request.user, OPERATOR),
            observations=list(NodeObservation.objects.filter(node=node).order_by("-observed_at", "-id")[:20]),
            operations=list(NodeOperation.objects.filter(node=node).select_related("rollout").order_by("-id")[:20]),
        )
        return context


def gate_checks(node) -> tuple:
    """The node's gates judged against its kubelet, and against the next release; (None, None) when
    its kubelet version or its gates are not known."""
    gates = node.observed_gates or {}
    if not gates or not node.kubelet_version:
        return None, None
    known = catalog()
    try:
        now = validate(node.kubelet_version, gates, known)
        major, minor = parse_minor(now.kubelet_minor)
        upgraded = validate(f"v{major}.{minor + 1}.0", gates, known)
    except (GateInputError, ValueError):
        return None, None
    return now, upgraded


class WhatIfPage(ViewerPage):
    """A hypothetical change to one cluster and its consequences, computed and never written."""

    template_name = "nodes/whatif.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        query = self.request.GET
        values = {key: query.get(key, "").strip() for key in ("cluster", "kubelet_version", "docker_version", "plan")}
        errors: dict[str, str] = {}
        result = upgrade = None
        clusters = list(Cluster.objects.order_by("name"))
        if any(values.values()):
            cluster = next((c for c in clusters if c.name == values["cluster"]), None)
            if cluster is None:
                errors["cluster"] = "choose a cluster" if not values["cluster"] else "no such cluster"
            try:
                change = Change.parse(values)
            except WhatIfError as exc:
                errors[exc.field] = str(exc)
            if not errors:
                result = whatif(cluster, change)
                if values["kubelet_version"]:
                    with contextlib.suppress(GateInputError):
                        upgrade = upgrade_check(
                            cluster=cluster, kubelet_version=values["kubelet_version"], catalog=catalog()
                        )
        context.update(
            clusters=clusters,
            plans=sorted(PLANS),
            values=values,
            errors=errors,
            result=result,
            listed=LISTED,
            upgrade=upgrade,
        )
        return context


class AuditListPage(ViewerPage):
    template_name = "nodes/audits.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["audits"] = list(Audit.objects.select_related("cluster").order_by("-created_at", "-id")[:100])
        context["clusters"] = list(Cluster.objects.order_by("name").values_list("name", flat=True))
        context["can_act"] = has_role(self.request.user, OPERATOR)
        context["live"] = any(a.status in AUDIT_ACTIVE_STATES for a in context["audits"])
        return context

    def get_template_names(self):
        return ["nodes/_audits_live.html"] if self.request.htmx else [self.template_name]

    def post(self, request, *args, **kwargs):
        """Run an audit now (operator)."""
        if not has_role(request.user, OPERATOR):
            raise PermissionDenied("You need the operator role.")
        name = request.POST.get("cluster", "")
        cluster = selectors.cluster_named(name)
        if name and cluster is None:
            messages.error(request, f"cluster: no cluster named {name[:100]!r}.")
            return redirect("audit-list-page")
        try:
            with transaction.atomic():
                audit = audits.audit_create(actor=f"user:{request.user.get_username()}", cluster=cluster)
                audit_enqueue(audit)
        except audits.AuditConflict as exc:
            messages.error(request, f"{exc} Follow it below.")
            return redirect("audit-page", pk=exc.audit.pk)
        messages.success(request, f"Audit {audit.pk} sent to a worker; this page follows it.")
        return redirect("audit-page", pk=audit.pk)


class AuditDetailPage(ViewerPage):
    template_name = "nodes/audit.html"
    shown = 500

    def get_template_names(self):
        return ["nodes/_audit_live.html"] if self.request.htmx else [self.template_name]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        audit = get_object_or_404(Audit.objects.select_related("cluster"), pk=kwargs["pk"])
        observations = (
            NodeObservation.objects.filter(audit=audit)
            .select_related("node", "node__cluster")
            .order_by("-drift", "reachable", "node__cluster__name", "node__name")
        )
        errors = dict(observations.exclude(error_code="").order_by().values_list("error_code").annotate(n=Count("id")))
        context.update(
            audit=audit,
            observations=list(observations[: self.shown]),
            shown=self.shown,
            error_counts=errors,
            live=audit.status in AUDIT_ACTIVE_STATES,
            retention_days=settings.PIDNS_OBSERVATION_RETENTION_DAYS,
            percent=100 * audit.done // audit.total if audit.total else (0 if audit.status == "queued" else 100),
        )
        return context


# --- feature gates ----------------------------------------------------------------------------------


class GateCatalogPage(ViewerPage):
    """Every Kubernetes feature gate: search by name, filter by stage at a release, and each gate's
    life from alpha to removal drawn across the releases."""

    template_name = "nodes/gates.html"
    shown = 200

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        known = catalog()
        errors = {}
        try:
            text, stage, at = catalog_query(self.request.GET)
        except ValidationError as exc:
            errors = {field: " ".join(map(str, messages)) for field, messages in exc.detail.items()}
            text, stage, at = "", None, None
        gates = known.search(text, stage, at) if not errors else []
        rows = [
            {
                "gate": gate,
                "strip": gate_strip(gate.name, gate.timeline(), gate.removed_in, known.oldest, known.newest),
                "at": gate.state_at(at) if at else None,
            }
            for gate in gates[: self.shown]
        ]
        context.update(
            rows=rows,
            count=len(gates),
            shown=self.shown,
            total=len(known.gates),
            stages=[*STAGES, "removed"],
            releases=[minor_label(m) for m in known.releases()],
            values={k: self.request.GET.get(k, "") for k in ("search", "stage", "at")},
            errors=errors,
            oldest=minor_label(known.oldest),
            newest=minor_label(known.newest),
        )
        return context


class ClusterGatesPage(ViewerPage):
    """A cluster's feature gates: what it wants, and per node what the service wants of it against
    what its kubelet runs with."""

    template_name = "nodes/cluster_gates.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        cluster = selectors.cluster_named(kwargs["name"])
        if cluster is None:
            raise Http404("no such cluster")
        nodes = list(selectors.node_list(cluster=cluster).order_by("name")[:1000])
        rows = []
        for node in nodes:
            desired = node.desired_gate_map()
            gate_drift = [d for d in node.drift_details if d.get("field") == "feature_gates"]
            rows.append({"node": node, "desired": desired, "drift": gate_drift})
        context.update(cluster=cluster, rows=rows, drifting=sum(1 for r in rows if r["drift"]))
        return context


class ClusterHistoryPage(ViewerPage):
    """A cluster's nodes by observed mode, and its drift, over a time range, from the stored
    readings (server-drawn SVG, with the numbers beside it)."""

    template_name = "nodes/cluster_history.html"

    def get_context_data(self, **kwargs):
        from datetime import datetime

        from django.utils import timezone

        context = super().get_context_data(**kwargs)
        cluster = selectors.cluster_named(kwargs["name"])
        if cluster is None:
            raise Http404("no such cluster")
        chosen = self.request.GET.get("range", "24h")
        if chosen not in selectors.HISTORY_RANGES:
            chosen = "24h"
        now = timezone.now()
        zone = timezone.get_current_timezone()

        def label(moment: datetime) -> str:
            ago = now - moment
            hours = int(ago.total_seconds() // 3600)
            words = "now" if ago.total_seconds() < 60 else f"{hours} h ago" if hours < 48 else f"{hours // 24} days ago"
            return f"{timezone.localtime(moment, zone):%b %d %H:%M %Z} ({words})"

        points = selectors.cluster_history(cluster, chosen, now=now)
        context.update(
            cluster=cluster,
            ranges=list(selectors.HISTORY_RANGES),
            chosen=chosen,
            points=[{**p, "label": label(p["at"])} for p in points],
            chart=history_chart(cluster.name, points, label),
            read_any=any(p["modes"] for p in points),
            zone=timezone.localtime(now, zone).strftime("%Z"),
        )
        return context


class UpgradeCheckPage(ViewerPage):
    """Before an upgrade: which nodes' gates would stop the new kubelet, which become no-ops."""

    template_name = "nodes/upgrade_check.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        values = {k: self.request.GET.get(k, "").strip() for k in ("cluster", "kubelet_version")}
        clusters = list(Cluster.objects.order_by("name"))
        errors: dict[str, str] = {}
        result = None
        if any(values.values()):
            cluster = next((c for c in clusters if c.name == values["cluster"]), None)
            if cluster is None:
                errors["cluster"] = "choose a cluster" if not values["cluster"] else "no such cluster"
            if not values["kubelet_version"]:
                errors["kubelet_version"] = "a kubelet version such as v1.19.0"
            if not errors:
                try:
                    result = upgrade_check(
                        cluster=cluster, kubelet_version=values["kubelet_version"], catalog=catalog()
                    )
                except GateInputError as exc:
                    errors[exc.field] = str(exc)
        context.update(clusters=clusters, values=values, errors=errors, result=result)
        return context


@require_POST
def node_adopt(request, pk):
    """Adopt what the node has (operator): its last reading becomes what the service wants."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not has_role(request.user, OPERATOR):
        raise PermissionDenied("You need the operator role.")
    node = get_object_or_404(Node.objects.select_related("cluster"), pk=pk)
    try:
        services.node_adopt(actor=f"user:{request.user.get_username()}", node=node)
    except services.InventoryError as exc:
        messages.error(request, " ".join(" ".join(map(str, v)) for v in exc.errors.values()))
    else:
        messages.success(request, "Adopted: what the node runs is now what the service wants of it.")
    return redirect("node-page", pk=node.pk)
