"""Project package (settings, URLs, Celery app) and the rollout domain."""

from .celery import app as celery_app

__all__ = ("celery_app",)
