"""The project package: settings, URLs, the Celery application, WSGI and ASGI entry points."""

from .celery import app as celery_app

__all__ = ("celery_app",)
