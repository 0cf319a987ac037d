"""Celery tasks for notifications. Thin: an id in, a service call, the retry schedule here."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from . import webhooks


@shared_task(acks_late=True, reject_on_worker_lost=True)
def webhook_deliver(delivery_id: int) -> str:
    """Try one delivery; a failed try is sent again after its backoff (doubling from
    ``PIDNS_WEBHOOK_BACKOFF``), up to six tries."""
    outcome = webhooks.deliver(delivery_id)
    if outcome == "retry":
        from .models import WebhookDelivery

        attempts = WebhookDelivery.objects.filter(pk=delivery_id).values_list("attempts", flat=True).first() or 1
        webhook_deliver.apply_async((delivery_id,), countdown=settings.PIDNS_WEBHOOK_BACKOFF * 2 ** (attempts - 1))
    return outcome


@shared_task
def webhooks_reconcile() -> str:
    """Beat: send again the deliveries whose try is due and whose message was lost."""
    due = webhooks.due_deliveries()
    for delivery_id in due:
        webhook_deliver.delay(delivery_id)
    return f"sent {len(due)} deliveries again"
