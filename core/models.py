"""The audit log: one row per change, written by the service that made it."""

from django.db import models


class AuditEvent(models.Model):
    """One change, written explicitly by the service that made it (never by a signal).

    ``actor`` names who acted: ``user:NAME`` (dashboard session), ``token:NAME`` (API token),
    ``command:NAME`` (management command) or ``task:NAME`` (Celery worker). ``before`` and
    ``after`` are JSON snapshots of the object; secrets are never put in them.
    """

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.CharField(max_length=200)
    verb = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=300, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)

    class Meta:
        db_table = "rollout_auditevent"  # the table predates this app; kept by a state-only move
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id"], name="auditevent_object")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor} {self.verb} {self.object_type} {self.object_repr}"


class SignInThrottle(models.Model):
    """Sign-in attempts counted for one (user name, address) pair, until ``until``."""

    key = models.CharField(max_length=64, unique=True)
    attempts = models.PositiveIntegerField(default=0)
    until = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.attempts} sign-in attempts until {self.until:%H:%M:%S}"


class Webhook(models.Model):
    """Where to tell about events of the kinds in ``events``: HMAC-signed JSON (``json``) or a
    Slack-compatible message (``slack``). The secret is write-only: no API or page returns it."""

    FORMATS = [("json", "signed JSON"), ("slack", "Slack-compatible message")]

    name = models.CharField(max_length=63, unique=True)
    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=200, help_text="Signs each delivery (HMAC-SHA256). Never shown again.")
    events = models.JSONField(default=list, help_text="Event kinds to deliver.")
    format = models.CharField(max_length=8, choices=FORMATS, default="json")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class WebhookDelivery(models.Model):
    """One event sent (or being sent) to one hook: its payload, tries, last answer."""

    STATUSES = [("pending", "pending"), ("delivered", "delivered"), ("failed", "failed")]

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    kind = models.CharField(max_length=32)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=STATUSES, default="pending", db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    response_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    next_try_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} to {self.webhook_id}: {self.status}"
