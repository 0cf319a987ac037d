"""Health check, and the audit log page."""

from django.db import connection
from django.http import JsonResponse
from django.views import defaults

from .api.filters import OBJECT_TYPES, EventFilter
from .models import AuditEvent
from .pages import ViewerPage


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


class EventListPage(ViewerPage):
    """The audit log: every change with its actor, newest first, filterable like the API's."""

    template_name = "core/events.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        filterset = EventFilter(self.request.GET, queryset=AuditEvent.objects.order_by("-created_at", "-id"))
        events = filterset.qs if filterset.is_valid() else AuditEvent.objects.none()
        context.update(filterset=filterset, object_types=OBJECT_TYPES, **self.paged(events))
        return context


def _api(request) -> bool:
    return request.path.startswith("/api/")


def not_found(request, exception=None):
    """404: JSON under /api/ (a client there reads JSON whatever the URL), the usual page elsewhere."""
    if _api(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def bad_request(request, exception=None):
    if _api(request):
        return JsonResponse({"detail": "Bad request."}, status=400)
    return defaults.bad_request(request, exception)


def server_error(request):
    if _api(request):
        return JsonResponse({"detail": "Server error."}, status=500)
    return defaults.server_error(request)
