"""Health check."""

from django.db import connection
from django.http import JsonResponse


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
