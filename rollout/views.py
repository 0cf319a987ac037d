"""Health check, and the dashboard's rollout pages (read for viewers, act for operators)."""

import math

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from core.models import AuditEvent
from core.pages import ViewerPage, sign_in_again
from core.roles import OPERATOR, VIEWER, has_role
from nodes.models import Cluster, Node

from . import selectors, transitions
from .errors import RolloutError
from .forms import INITIAL, form_errors, form_values, labelled, validate
from .models import (
    ROLLOUT_ACTIVE_STATES,
    ROLLOUT_FINAL_STATES,
    ROLLOUT_INTENTS,
    NodeOperation,
    OperationState,
    Rollout,
    RolloutStatus,
)
from .selectors import progress_of, rollouts_with_counts
from .states import ROLLOUT
from .strategy import DAYS
from .tasks import rollout_kick

# Actions that ask the operator to confirm, with what they do.
DESTRUCTIVE = {
    "abort": ROLLOUT["abort"].description[0].upper() + ROLLOUT["abort"].description[1:] + ".",
    "rollback": "Every node this rollout changed returns to its previous kubelet flags.",
}
# How the action buttons look: the way forward stands out, and what cannot be taken back is marked.
ACTION_STYLES = {"start": "go", "resume": "go", "approve": "go", "abort": "danger", "rollback": "danger"}
# A rollout page lists at most this many operations (the waves table counts them all).
OPERATIONS_SHOWN = 500


class RolloutListPage(ViewerPage):
    template_name = "rollout/rollouts.html"
    shown = 100

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        status = self.request.GET.get("status", "")
        cluster = self.request.GET.get("cluster", "")
        clusters = list(Cluster.objects.order_by("name").values_list("name", flat=True))
        rollouts = Rollout.objects.select_related("cluster")
        errors = {}
        if status and status not in RolloutStatus.values:
            errors["status"] = f"one of {', '.join(RolloutStatus.values)}"
        elif status:
            rollouts = rollouts.filter(status=status)
        if cluster and cluster not in clusters:
            errors["cluster"] = "no such cluster"
        elif cluster:
            rollouts = rollouts.filter(cluster__name=cluster)
        if errors:
            rollouts = rollouts.none()
        context.update(
            rollouts=list(rollouts_with_counts(rollouts).order_by("-created_at", "-id")[: self.shown]),
            shown=self.shown,
            statuses=RolloutStatus.values,
            clusters=clusters,
            status=status,
            cluster=cluster,
            errors=errors,
            can_act=has_role(self.request.user, OPERATOR),
        )
        return context


class RolloutDetailPage(ViewerPage):
    """The rollout as it runs. htmx polls the live part with the fingerprint it was rendered from
    and gets 204 No Content while nothing changed, so the page (and a screen reader) only sees
    real changes."""

    template_name = "rollout/rollout.html"

    def get(self, request, *args, **kwargs):
        rollout = get_object_or_404(Rollout.objects.select_related("cluster"), pk=kwargs["pk"])
        fingerprint = selectors.rollout_fingerprint(rollout)
        if request.htmx and request.GET.get("since") == fingerprint:
            return HttpResponse(status=204)
        if request.htmx:
            self.template_name = "rollout/_rollout_live.html"
        state = request.GET.get("state", "")
        context = self.get_context_data(
            rollout=rollout,
            fingerprint=fingerprint,
            state=state if state in OperationState.values else "",
            **kwargs,
        )
        return self.render_to_response(context)

    @staticmethod
    def _time_left(rollout, progress, waves) -> str:
        """Remaining operations at the rollout's width and its own pace so far (else its cluster's
        recent pace), plus the soaks to come. Said in words; none before any pace is known."""
        remaining = progress.total - progress.finished
        if rollout.status != "running" or not remaining:
            return ""
        per_node = selectors.rollout_pace(rollout) or selectors.seconds_per_node(rollout.cluster, default=None)
        if per_node is None:
            return "time left: estimated once the first node finishes"
        soaks = max(0, len(waves) - rollout.current_wave - 1)
        seconds = math.ceil(remaining / max(1, rollout.max_unavailable)) * per_node + rollout.soak_seconds * soaks
        pending = f"{remaining} node{'s' if remaining != 1 else ''} to go"
        if seconds < 1:
            return f"{pending}, less than a second left"
        if seconds < 90:
            return f"{pending}, about {math.ceil(seconds)} s left"
        return f"{pending}, about {math.ceil(seconds / 60)} min left"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        rollout = kwargs["rollout"]
        counts = selectors.rollout_counts(rollout)
        progress = progress_of(counts["forward"])
        back = progress_of(counts["rollback"])
        can_act = has_role(self.request.user, OPERATOR)
        waves = selectors.rollout_waves(rollout)
        eta = self._time_left(rollout, progress, waves)
        # Operations by state (both phases; the ones skipped at creation count as skipped), to filter the table.
        state_counts: dict[str, int] = {}
        for phase in ("forward", "rollback"):
            for name, n in counts[phase].items():
                state_counts[name] = state_counts.get(name, 0) + n
        if counts["skipped_at_creation"]:
            state_counts["skipped"] = state_counts.get("skipped", 0) + counts["skipped_at_creation"]
        operations = NodeOperation.objects.filter(rollout=rollout).select_related("node")
        if kwargs["state"]:
            operations = operations.filter(state=kwargs["state"])
        context.update(
            eta=eta,
            timeline=selectors.rollout_timeline(rollout),
            counts=counts,
            progress=progress,
            back=back,
            live=rollout.status not in ROLLOUT_FINAL_STATES,
            poll_seconds=1 if rollout.status in ROLLOUT_ACTIVE_STATES else 5,
            waves=waves,
            operations=list(operations.order_by("phase", "wave", "node__name")[:OPERATIONS_SHOWN]),
            state=kwargs["state"],
            state_counts=dict(sorted(state_counts.items())),
            operations_total=sum(state_counts.values()),
            operations_shown=OPERATIONS_SHOWN,
            events=list(
                AuditEvent.objects.filter(object_type="rollout", object_id=str(rollout.pk)).order_by(
                    "-created_at", "-id"
                )[:100]
            ),
            actions=[
                (a, DESTRUCTIVE.get(a, ""), ACTION_STYLES.get(a, "")) for a in transitions.rollout_actions(rollout)
            ]
            if can_act
            else [],
        )
        return context


# What a link to the form may fill in (a node's "put it back", a selection of nodes).
PREFILLED = ("cluster", "intent", "nodes", "labels", "canary_count", "name")


def _selection(ids: list[str]) -> tuple[dict[str, str], str]:
    """The form's cluster and node names for nodes picked in the node list, and what is wrong
    with the selection (nodes of several clusters, ids that are not nodes), if anything."""
    wanted = {int(i) for i in ids if i.isdigit()}
    rows = list(Node.objects.filter(pk__in=wanted).values_list("cluster__name", "name").order_by("name"))
    clusters = sorted({cluster for cluster, _ in rows})
    if not rows:
        return {}, "none of the selected nodes exists any more"
    if len(clusters) > 1:
        return {"nodes": " ".join(name for _, name in rows)}, (
            f"the selected nodes are in {len(clusters)} clusters ({', '.join(clusters)}): "
            "a rollout changes one cluster; select nodes of one"
        )
    missing = len(wanted) - len(rows)
    problem = f"{missing} of the selected nodes no longer exist" if missing else ""
    return {"cluster": clusters[0], "nodes": " ".join(name for _, name in rows)}, problem


class RolloutCreatePage(ViewerPage):
    """The create form. Viewers may fill it in and see the preview; only operators create."""

    template_name = "rollout/rollout_new.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        query = self.request.GET
        values = kwargs.get("values") or {
            **INITIAL,
            **{key: query[key] for key in PREFILLED if query.get(key)},
        }
        errors = dict(kwargs.get("errors") or {})
        if query.getlist("node_id") and not kwargs.get("values"):
            selected, problem = _selection(query.getlist("node_id"))
            values.update(selected)
            if problem:
                errors["nodes"] = [problem]
        context.update(
            clusters=list(Cluster.objects.order_by("name").values_list("name", flat=True)),
            intents=ROLLOUT_INTENTS,
            days=DAYS,
            values=values,
            errors=errors,
            can_act=has_role(self.request.user, OPERATOR),
        )
        return context

    def post(self, request, *args, **kwargs):
        if not has_role(request.user, OPERATOR):
            raise PermissionDenied("You need the operator role.")
        data, errors = validate(request.POST)
        if data is not None:
            actor = f"user:{request.user.get_username()}"
            try:
                rollout = transitions.rollout_submit(actor=actor, data=data, start=data["start"])
                if data["start"]:
                    rollout_kick(rollout.pk)
            except RolloutError as exc:
                errors = form_errors(exc.errors)
            else:
                messages.success(request, f"Rollout #{rollout.pk} created; it is {rollout.status}.")
                return redirect("rollout-page", pk=rollout.pk)
        context = self.get_context_data(values=form_values(request.POST), errors=errors)
        return self.render_to_response(context, status=400)


def rollout_preview(request):
    """The create form's live preview (htmx): what the rollout would do, or why it cannot be read.
    Computed, never written."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not request.user.is_authenticated:
        return sign_in_again(request) if request.htmx else HttpResponse(status=401)
    if not has_role(request.user, VIEWER):
        raise PermissionDenied("You need the viewer role.")
    if not request.POST.get("cluster"):
        return render(request, "rollout/_preview.html", {"preview": None, "errors": {}})
    data, errors = validate(request.POST)
    preview = None
    if data is not None:
        preview = selectors.rollout_preview(
            cluster=data["cluster"], selector=data["selector"], change=data["change"], strategy=data["strategy"]
        )
        preview["canary"] = data["strategy"].canary_count > 0
        preview["busy"] = [t for t in preview["targets"] if t["busy_in_rollout"]]
    return render(request, "rollout/_preview.html", {"preview": preview, "errors": labelled(errors)})


@require_POST
def rollout_act(request, pk, action):
    """One operator action from the dashboard: checked on the server, CSRF-protected."""
    if not request.user.is_authenticated:
        return redirect(f"/login/?next=/rollouts/{pk}/")
    if not has_role(request.user, OPERATOR):
        raise PermissionDenied("You need the operator role.")
    if action not in transitions.ACTIONS:
        raise PermissionDenied("Unknown action.")
    rollout = get_object_or_404(Rollout, pk=pk)
    try:
        rollout = transitions.ACTIONS[action](actor=f"user:{request.user.get_username()}", rollout=rollout)
    except RolloutError as exc:
        messages.error(request, "; ".join(" ".join(map(str, v)) for v in exc.errors.values()))
        return redirect("rollout-page", pk=pk)
    if action in transitions.KICKS:
        rollout_kick(rollout.pk)
    messages.success(request, f"{action}: the rollout is now {rollout.status}.")
    return redirect("rollout-page", pk=pk)
