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
