"""The Celery application. Configuration comes from Django settings (``CELERY_*``)."""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("pidns")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Celery's Django fixup closes every database connection before and after each task unless told
# to reuse them; a new PostgreSQL connection per task (a backend process forked each time) cost
# more CPU than the task itself. Connections are kept instead, and aged out the way Django does
# it between requests (CONN_MAX_AGE, with health checks), below.
app.conf["CELERY_DB_REUSE_MAX"] = 2**31


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(**_kwargs) -> None:
    from django.db import close_old_connections

    close_old_connections()


app.autodiscover_tasks()


def worker_argv(
    *,
    hostname: str = "",
    concurrency: int = 4,
    loglevel: str = "WARNING",
    quiet: bool = False,
    pool: str = "threads",
) -> list[str]:
    """The command line of a worker (after the Python interpreter). Threads by default: an
    operation's step is mostly a wait on an engine, and a thread is cheap. ``quiet`` drops the
    cluster chatter (heartbeats, mingle, gossip) that single-purpose workers do not need."""
    argv = [
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--pool",
        pool,
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
