"""The Celery application. Configuration comes from Django settings (``CELERY_*``)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("pidns")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def worker_argv(
    *, hostname: str = "", concurrency: int = 4, loglevel: str = "WARNING", quiet: bool = False
) -> list[str]:
    """The command line of a worker (after the Python interpreter): threads, since node
    operations mostly wait on engines. ``quiet`` drops the cluster chatter (heartbeats, mingle,
    gossip) that single-purpose workers do not need."""
    argv = [
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--pool",
        "threads",
        "--concurrency",
        str(concurrency),
        "--loglevel",
        loglevel,
    ]
    if hostname:
        argv += ["--hostname", hostname]
    if quiet:
        argv += ["--without-heartbeat", "--without-mingle", "--without-gossip"]
    return argv
