"""Notifications: webhooks per event kind, HMAC-signed JSON (or a Slack-compatible message),
delivered by Celery with retries and backoff, each delivery logged.

``notify(kind, subject, data)`` is called by the services when something an operator wants to
hear about happens (a rollout awaits approval, fails, is rolled back or succeeds; an audit finds
drift). It writes one delivery row per active hook that asks for that kind, and sends each to a
worker once the transaction commits: nothing is sent for a change that is rolled back, and a
delivery survives a broker restart (the reconciler sends due ones again).

The receiver checks ``X-Pidns-Signature: sha256=<hex>``, the HMAC-SHA256 of
``<X-Pidns-Timestamp>.<body>`` with the hook's secret, and may refuse old timestamps.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

log = logging.getLogger(__name__)

EVENT_KINDS = ("awaiting-approval", "failed", "rolled-back", "succeeded", "drift-found")
ROLLOUT_KINDS = {"awaiting-approval", "failed", "rolled-back", "succeeded"}
MAX_ATTEMPTS = 6
TIMEOUT = (5, 10)
CLAIM_SECONDS = 60  # a try holds its delivery this long; past it, the reconciler sends it again


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def payload(kind: str, subject: str, data: dict[str, Any], fmt: str) -> dict[str, Any]:
    """The JSON a hook receives: the event as it is, or a Slack-compatible message (``text``)."""
    if fmt == "slack":
        words = {
            "awaiting-approval": ":hourglass: {subject} waits for approval",
            "failed": ":x: {subject} failed",
            "rolled-back": ":leftwards_arrow_with_hook: {subject} was rolled back",
            "succeeded": ":white_check_mark: {subject} succeeded",
            "drift-found": ":warning: {subject} found drift",
        }[kind].format(subject=subject)
        detail = data.get("reason") or data.get("summary") or ""
        link = data.get("url")
        text = words + (f": {detail}" if detail else "") + (f" <{link}|open>" if link else "")
        return {"text": text}
    return {"kind": kind, "subject": subject, "at": timezone.now().isoformat(), **data}


@transaction.atomic
def webhook_save(*, actor: str, hook, **fields: Any):
    """Create or change a webhook, in the audit log (never its secret)."""
    from .events import event_record

    created = hook.pk is None
    before = None if created else _snapshot(hook)
    for name, value in fields.items():
        setattr(hook, name, value)
    hook.save()
    event_record(
        actor=actor,
        verb="create" if created else "update",
        object_type="webhook",
        object_id=hook.pk,
        object_repr=hook.name,
        before=before,
        after=_snapshot(hook),
    )
    return hook


@transaction.atomic
def webhook_delete(*, actor: str, hook) -> None:
    from .events import event_record

    before = _snapshot(hook)
    pk = hook.pk
    hook.delete()
    event_record(
        actor=actor, verb="delete", object_type="webhook", object_id=pk, object_repr=before["name"], before=before
    )


def _snapshot(hook) -> dict[str, Any]:
    return {
        "name": hook.name,
        "url": hook.url,
        "events": list(hook.events),
        "format": hook.format,
        "active": hook.active,
    }


def link(path: str) -> dict[str, str]:
    """``{"url": ...}`` for a page of the dashboard, when ``PIDNS_BASE_URL`` says where it is."""
    base = settings.PIDNS_BASE_URL.rstrip("/")
    return {"url": f"{base}{path}"} if base else {}


def notify(kind: str, subject: str, data: dict[str, Any]) -> int:
    """Queue a delivery of ``kind`` to every active hook that asks for it. Returns how many."""
    from .models import Webhook, WebhookDelivery

    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    hooks = [hook for hook in Webhook.objects.filter(active=True) if kind in hook.events]
    deliveries = WebhookDelivery.objects.bulk_create(
        [WebhookDelivery(webhook=hook, kind=kind, payload=payload(kind, subject, data, hook.format)) for hook in hooks]
    )
    ids = [d.pk for d in deliveries]
    if ids:
        transaction.on_commit(lambda: _send(ids))
    return len(ids)


def _send(ids: list[int]) -> None:
    from .tasks import webhook_deliver

    for delivery_id in ids:
        try:
            webhook_deliver.delay(delivery_id)
        except Exception:  # the broker is down: the reconciler sends it again
            log.warning("could not queue webhook delivery %s; it will be sent again", delivery_id)


def deliver(delivery_id: int) -> str:
    """One try of one delivery. Returns ``delivered``, ``retry`` (with ``next_try_at`` set) or
    ``failed`` (gave up), or ``done`` when it was not due."""
    import requests

    from .models import WebhookDelivery

    delivery = WebhookDelivery.objects.select_related("webhook").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != "pending":
        return "done"
    # Claim this try (two messages for one delivery send it once): the try is held for a minute.
    now = timezone.now()
    claimed = (
        WebhookDelivery.objects.filter(pk=delivery.pk, status="pending", attempts=delivery.attempts)
        .filter(Q(next_try_at__isnull=True) | Q(next_try_at__lte=now))
        .update(next_try_at=now + timedelta(seconds=CLAIM_SECONDS))
    )
    if not claimed:
        return "done"
    hook = delivery.webhook
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
    stamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "pidns-rollout-manager",
        "X-Pidns-Event": delivery.kind,
        "X-Pidns-Delivery": str(delivery.pk),
        "X-Pidns-Timestamp": stamp,
        "X-Pidns-Signature": signature(hook.secret, stamp, body),
    }
    attempts = delivery.attempts + 1
    code, error = None, ""
    try:
        response = requests.post(hook.url, data=body, headers=headers, timeout=TIMEOUT, allow_redirects=False)
        code = response.status_code
        if not 200 <= code < 300:
            error = f"the receiver answered {code}"
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {str(exc).split(chr(10))[0][:300]}"
    now = timezone.now()
    if not error:
        WebhookDelivery.objects.filter(pk=delivery.pk, status="pending").update(
            status="delivered", attempts=attempts, response_code=code, error="", delivered_at=now, next_try_at=None
        )
        return "delivered"
    if attempts >= MAX_ATTEMPTS or (code is not None and 400 <= code < 500 and code not in (408, 429)):
        WebhookDelivery.objects.filter(pk=delivery.pk, status="pending").update(
            status="failed", attempts=attempts, response_code=code, error=error, next_try_at=None
        )
        return "failed"
    backoff = settings.PIDNS_WEBHOOK_BACKOFF * 2 ** (attempts - 1)
    WebhookDelivery.objects.filter(pk=delivery.pk, status="pending").update(
        attempts=attempts, response_code=code, error=error, next_try_at=now + timedelta(seconds=backoff)
    )
    return "retry"


def due_deliveries(now=None) -> list[int]:
    """Pending deliveries whose message was lost: due for a while and not being tried."""
    from .models import WebhookDelivery

    now = now or timezone.now()
    stale = now - timedelta(seconds=CLAIM_SECONDS)
    return list(
        WebhookDelivery.objects.filter(status="pending")
        .filter(Q(next_try_at__lte=stale) | Q(next_try_at__isnull=True, created_at__lte=stale))
        .order_by("id")
        .values_list("id", flat=True)[:1000]
    )
