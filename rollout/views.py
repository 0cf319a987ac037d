"""Health check, and the dashboard's rollout pages (read for viewers, act for operators)."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from nodes.views import ViewerPage

from . import services
from .models import AuditEvent, NodeOperation, Rollout
from .roles import OPERATOR, has_role
from .selectors import progress_of, rollouts_with_counts
from .tasks import rollout_kick

ACTIONS = {
    "start": (services.rollout_start, True),
    "pause": (services.rollout_pause, False),
    "resume": (services.rollout_resume, True),
    "abort": (services.rollout_abort, False),
    "approve": (services.rollout_approve, True),
    "rollback": (services.rollout_rollback, True),
}
# Which actions make sense from which status (the services check again, atomically).
AVAILABLE = {
    "draft": ["start", "abort"],
    "running": ["pause", "abort"],
    "paused": ["resume", "abort"],
    "awaiting-approval": ["approve", "pause", "abort"],
    "rolling-back": ["abort"],
    "succeeded": ["rollback"],
    "failed": ["rollback"],
    "aborted": ["rollback"],
    "rolled-back": [],
}
DESTRUCTIVE = {"abort", "rollback"}


def healthz(request):
    """Liveness and database readiness. No authentication, no details beyond ok/failing."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        database = "ok"
    except Exception:  # any failure to reach the database means not ready
        database = "failing"
    healthy = database == "ok"
    return JsonResponse(
        {"status": "ok" if healthy else "failing", "checks": {"database": database}}, status=200 if healthy else 503
    )


class RolloutListPage(ViewerPage):
    template_name = "dashboard/rollouts.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["rollouts"] = list(
            rollouts_with_counts(Rollout.objects.select_related("cluster")).order_by("-created_at")[:100]
        )
        return context


class RolloutDetailPage(ViewerPage):
    template_name = "dashboard/rollout.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        rollout = get_object_or_404(Rollout.objects.select_related("cluster"), pk=kwargs["pk"])
        counts = services.rollout_counts(rollout)
        progress = progress_of(counts["forward"])
        can_act = has_role(self.request.user, OPERATOR)
        context.update(
            rollout=rollout,
            counts=counts,
            progress=progress.percent,
            finished=progress.finished,
            total=progress.total,
            failed=progress.failed,
            waves=services.rollout_waves(rollout),
            operations=list(
                NodeOperation.objects.filter(rollout=rollout)
                .select_related("node")
                .order_by("phase", "wave", "node__name")
            ),
            events=list(
                AuditEvent.objects.filter(object_type="rollout", object_id=str(rollout.pk)).order_by(
                    "-created_at", "-id"
                )[:100]
            ),
            actions=[(a, a in DESTRUCTIVE) for a in AVAILABLE.get(rollout.status, [])] if can_act else [],
        )
        return context


@require_POST
def rollout_act(request, pk, action):
    """One operator action from the dashboard: checked on the server, CSRF-protected."""
    if not request.user.is_authenticated:
        return redirect(f"/login/?next=/rollouts/{pk}/")
    if not has_role(request.user, OPERATOR):
        raise PermissionDenied("You need the operator role.")
    if action not in ACTIONS:
        raise PermissionDenied("Unknown action.")
    rollout = get_object_or_404(Rollout, pk=pk)
    service, kick = ACTIONS[action]
    try:
        rollout = service(actor=f"user:{request.user.get_username()}", rollout=rollout)
    except services.RolloutError as exc:
        messages.error(request, "; ".join(" ".join(map(str, v)) for v in exc.errors.values()))
        return redirect("rollout-page", pk=pk)
    if kick:
        rollout_kick(rollout.pk)
    messages.success(request, f"{action}: the rollout is now {rollout.status}.")
    return redirect("rollout-page", pk=pk)
