"""Prometheus metrics at ``/metrics``, read from the database at each scrape.

Every value comes from the tables (or the broker) when Prometheus asks, not from counters kept in
one process: any web process answers the same, and a restart loses nothing. The collectors live
with their domain (:mod:`nodes.metrics`, :mod:`rollout.metrics`); this module composes them,
reports the broker's queue depth, and guards the endpoint: a bearer token
(``PIDNS_METRICS_TOKEN``) or a client address in ``PIDNS_METRICS_ALLOW_IPS``. With neither set the
endpoint answers 403 and says how to turn it on.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric

log = logging.getLogger(__name__)

PREFIX = "pidns"


def histogram(name: str, documentation: str, queryset, field: str, buckets: Iterable[float]) -> HistogramMetricFamily:
    """A histogram of ``field`` over ``queryset`` in one aggregate query (cumulative buckets)."""
    bounds = list(buckets)
    aggregates = {f"le{i}": Count("pk", filter=Q(**{f"{field}__lte": bound})) for i, bound in enumerate(bounds)}
    row = queryset.filter(**{f"{field}__isnull": False}).aggregate(total=Count("pk"), sum=Sum(field), **aggregates)
    points = [(_le(bound), row[f"le{i}"]) for i, bound in enumerate(bounds)]
    points.append(("+Inf", row["total"]))
    family = HistogramMetricFamily(name, documentation)
    family.add_metric([], points, sum_value=float(row["sum"] or 0.0))
    return family


def _le(bound: float) -> str:
    return str(float(bound))


class BrokerCollector:
    """Messages waiting in the Celery queues (Redis broker only)."""

    def collect(self) -> Iterator[Metric]:
        url = settings.CELERY_BROKER_URL
        if not url.startswith(("redis://", "rediss://")):
            return
        import redis

        gauge = GaugeMetricFamily(
            f"{PREFIX}_broker_queue_depth", "Messages waiting in the broker's queue.", labels=["queue"]
        )
        try:
            client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
            try:
                for queue in settings.PIDNS_METRICS_QUEUES:
                    gauge.add_metric([queue], float(client.llen(queue)))
            finally:
                client.close()
        except redis.RedisError as exc:
            log.warning("metrics: the broker did not answer: %s", type(exc).__name__)
            up = GaugeMetricFamily(f"{PREFIX}_broker_up", "1 when the broker answered this scrape.")
            up.add_metric([], 0.0)
            yield up
            return
        up = GaugeMetricFamily(f"{PREFIX}_broker_up", "1 when the broker answered this scrape.")
        up.add_metric([], 1.0)
        yield up
        yield gauge


def registry() -> CollectorRegistry:
    """A registry of every configured collector (``PIDNS_METRICS_COLLECTORS``), built per scrape."""
    built = CollectorRegistry(auto_describe=False)
    for path in settings.PIDNS_METRICS_COLLECTORS:
        built.register(import_string(path)())
    return built


def _client_address(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR", "")


def _allowed(request: HttpRequest) -> bool:
    token = settings.PIDNS_METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:].encode(), token.encode()):
        return True
    try:
        address = ipaddress.ip_address(_client_address(request))
    except ValueError:
        return False
    return any(address in network for network in settings.PIDNS_METRICS_ALLOW_NETWORKS)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not settings.PIDNS_METRICS_TOKEN and not settings.PIDNS_METRICS_ALLOW_NETWORKS:
        return HttpResponse(
            "metrics are off: set PIDNS_METRICS_TOKEN (scrape with a bearer token) or PIDNS_METRICS_ALLOW_IPS\n",
            status=403,
            content_type="text/plain",
        )
    if not _allowed(request):
        response = HttpResponse("a valid bearer token or an allowed address is required\n", status=401)
        response["Content-Type"] = "text/plain"
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
