"""A first try of the whole system on the embedded default.

Migrates, loads the demo inventory (first run), creates an admin with a token, starts a
simulated fleet registered in the inventory, a Celery worker and beat, runs a first audit, prints
how to reach everything, and serves the web app. Ctrl-C stops every process it started.
"""

import contextlib
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from rest_framework.authtoken.models import Token

from config.celery import worker_argv
from core.progress import ProgressLine
from core.roles import ADMIN, role_set
from nodes import audits
from nodes.kubesync import SyncError, cluster_sync
from nodes.models import Cluster
from nodes.tasks import audit_enqueue
from rollout import transitions
from rollout.errors import RolloutError
from rollout.models import Rollout
from rollout.strategy import Strategy
from simfleet.fleet import dockerd_available

DEMO_FLEET = Path(settings.BASE_DIR) / "simfleet" / "demo.yaml"
GUNICORN_CONF = Path(settings.BASE_DIR) / "config" / "gunicorn.conf.py"


class Command(BaseCommand):
    help = "Set up and run the whole system with a demo fleet: web app, worker, beat, simulated nodes."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000")
        parser.add_argument(
            "--engine",
            choices=["auto", "fake", "real"],
            default="auto",
            help="simulated fleet engine; auto uses real when a local dockerd answers",
        )
        parser.add_argument("--no-serve", action="store_true", help="set up and print, but start nothing")

    def handle(self, *args, addr, engine, no_serve, **options):
        call_command("migrate", verbosity=0, interactive=False)
        if not Cluster.objects.exists():
            call_command("load_demo", stdout=self.stdout)
        token, password = self._admin()
        if no_serve:
            self._banner(addr, token, password, engine="none")
            return
        self.children: list[subprocess.Popen] = []
        previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            engine = self._start_fleet(engine)
            self._sync_clusters()
            self._start_celery()
            self._first_audit()
            rollout = demo_rollout()
            self._banner(addr, token, password, engine, rollout)
            self._serve(addr)
        except KeyboardInterrupt:
            self.stdout.write("\nstopping")
        finally:
            signal.signal(signal.SIGTERM, previous)
            self._stop_children()

    # --- steps ---------------------------------------------------------------------------------

    def _admin(self) -> tuple[str, str]:
        password = self._admin_password()
        user, created = get_user_model().objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True}
        )
        if created or not user.check_password(password):
            user.set_password(password)
            user.save()
        role_set(user=user, role=ADMIN)
        return Token.objects.get_or_create(user=user)[0].key, password

    def _admin_password(self) -> str:
        """The demo admin's password, generated once and kept in var/ (mode 0600)."""
        path = settings.VAR_DIR / "admin-password"
        if path.exists():
            return path.read_text().strip()
        password = secrets.token_urlsafe(12)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(password)
        return password

    def _spawn(self, *args: str, **kwargs) -> subprocess.Popen:
        child = subprocess.Popen([sys.executable, *args], cwd=settings.BASE_DIR, **kwargs)  # noqa: S603
        self.children.append(child)
        return child

    def _start_fleet(self, engine: str) -> str:
        if engine == "auto":
            engine = "real" if dockerd_available() else "fake"
        child = self._spawn(
            "manage.py",
            "simfleet",
            str(DEMO_FLEET),
            "--register",
            "--engine",
            engine,
            stdout=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 180
        self.kubeconfigs: dict[str, str] = {}
        for line in child.stdout:
            if line.startswith("simfleet kubeconfig "):
                name, _, path = line.removeprefix("simfleet kubeconfig ").rstrip().partition(": ")
                self.kubeconfigs[name] = path
            if line.startswith("simfleet ready"):
                self.stdout.write(line.rstrip())
                break
            if time.monotonic() > deadline:
                break
        else:
            raise CommandError(f"the simulated fleet did not start (exit {child.wait()})")
        # Keep draining its output so it never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in child.stdout], daemon=True).start()
        return engine

    def _sync_clusters(self) -> None:
        """Discover the demo clusters' nodes from their Kubernetes APIs, as an operator would."""
        for cluster in Cluster.objects.exclude(kube_api_server="").order_by("name"):
            try:
                result = cluster_sync(actor="command:quickstart", cluster=cluster)
            except SyncError as exc:
                self.stderr.write(f"cluster sync {cluster.name}: {exc}")
                continue
            self.stdout.write(f"cluster sync {cluster.name}: {result}")

    def _start_celery(self) -> None:
        self._spawn(*worker_argv(concurrency=4))
        beat_schedule = str(settings.VAR_DIR / "celerybeat-schedule")
        self._spawn("-m", "celery", "-A", "rollout", "beat", "--loglevel", "WARNING", "--schedule", beat_schedule)

    def _first_audit(self) -> None:
        try:
            with transaction.atomic():
                audit = audits.audit_create(actor="command:quickstart")
                audit_enqueue(audit)
        except audits.AuditConflict as exc:
            audit = exc.audit
        line = ProgressLine(getattr(self.stdout, "_out", self.stdout), f"first audit {audit.pk}")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            audit.refresh_from_db()
            line.show(f"{audit.status}, {audit.done}/{audit.total} nodes")
            if audit.status in ("succeeded", "failed"):
                break
            time.sleep(0.5)
        line.close()

    def _banner(self, addr: str, token: str, password: str, engine: str, rollout: Rollout | None = None) -> None:
        url = f"http://{addr}/"
        example = '{"kubelet_version": "v1.6.4", "runtime_version": "1.12.6"}'
        lines = [
            "",
            f"PID namespace rollout manager: {url}",
            f"  API docs:    {url}api/docs/",
            f"  admin token: {token}",
            f"  admin login: admin / {password}   (dashboard {url}, Django admin {url}admin/)",
            f"  simulated fleet: clusters lab, lab-upstream and lab-gates ({engine} engine)",
            "  try:",
            f"    curl -s -H 'Authorization: Token {token}' -H 'Content-Type: application/json' \\",
            f"      -d '{example}' {url}api/v1/decisions/evaluate/",
            f"    curl -s -H 'Authorization: Token {token}' '{url}api/v1/nodes/?cluster=lab'",
            *(
                [f"  a draft rollout to try in the dashboard (press Start): {url}rollouts/{rollout.pk}/"]
                if rollout
                else []
            ),
            *(
                [
                    "  each demo cluster has a Kubernetes API; rollouts cordon, drain and uncordon its nodes:",
                    *(
                        f"    kubectl --kubeconfig {path} get nodes"
                        for name, path in sorted(getattr(self, "kubeconfigs", {}).items())
                    ),
                ]
                if getattr(self, "kubeconfigs", None)
                else []
            ),
            "  before upgrading lab-gates' kubelets to 1.19 (a gate they run with is removed there):",
            "    .venv/bin/python manage.py gates upgrade-check --cluster lab-gates --to v1.19.0",
            "  or a rollout from the command line (the worker carries it out):",
            "    .venv/bin/python manage.py rollout create --cluster lab-upstream --intent shared --label pool=general "
            "--batch 50% --start --follow",
            "",
        ]
        self.stdout.write("\n".join(lines))

    def _serve(self, addr: str) -> None:
        """Serve with gunicorn, the server production runs, until interrupted."""
        server = self._spawn("-m", "gunicorn", "-c", str(GUNICORN_CONF), "--bind", addr)
        server.wait()

    def _stop_children(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT if "simfleet" in child.args else signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            if child.poll() is None:
                child.kill()


DEMO_ROLLOUT = "lab general pool to shared (demo)"


def demo_rollout() -> Rollout | None:
    """A draft rollout over the demo's ``lab`` cluster for the operator to start from the dashboard:
    the general pool to shared, one canary that waits for approval, then waves of half the rest.
    Created once; None when there is no ``lab`` cluster or its nodes are busy elsewhere."""
    existing = Rollout.objects.filter(name=DEMO_ROLLOUT).order_by("-id").first()
    if existing is not None:
        return existing
    cluster = Cluster.objects.filter(name="lab").first()
    if cluster is None:
        return None
    try:
        with transaction.atomic():
            return transitions.rollout_create(
                actor="command:quickstart",
                name=DEMO_ROLLOUT,
                cluster=cluster,
                intent="shared",
                selector={"labels": {"pool": "general"}},
                strategy=Strategy(
                    canary_count=1, batch_size=50, batch_percent=True, max_unavailable=2, pause_after_canary=True
                ),
            )
    except RolloutError:
        return None
