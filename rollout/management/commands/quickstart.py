"""Set up a first-try instance and serve it: migrate, load the demo inventory, create an admin
with a token, print how to reach it, then run the web server."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token

from nodes.models import Cluster
from rollout.roles import ADMIN, role_set


class Command(BaseCommand):
    help = "Migrate, load the demo inventory (first run only), create the admin user and token, and serve."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000")
        parser.add_argument("--no-serve", action="store_true", help="set up and print, but do not serve")

    def handle(self, *args, addr, no_serve, **options):
        call_command("migrate", verbosity=0, interactive=False)
        if not Cluster.objects.exists():
            call_command("load_demo", stdout=self.stdout)
        password = self._admin_password()
        User = get_user_model()
        user, created = User.objects.get_or_create(username="admin", defaults={"is_staff": True, "is_superuser": True})
        if created or not user.check_password(password):
            user.set_password(password)
            user.save()
        role_set(user=user, role=ADMIN)
        token, _ = Token.objects.get_or_create(user=user)
        url = f"http://{addr}/"
        example = '{"kubelet_version": "v1.6.4", "runtime_version": "1.12.6"}'
        self.stdout.write(
            "\n".join(
                [
                    "",
                    f"PID namespace rollout manager: {url}",
                    f"  API docs:    {url}api/docs/",
                    f"  admin token: {token.key}",
                    f"  admin login: admin / {password}   ({url}admin/)",
                    "  try:",
                    f"    curl -s -H 'Authorization: Token {token.key}' -H 'Content-Type: application/json' \\",
                    f"      -d '{example}' {url}api/v1/decisions/evaluate/",
                    "",
                ]
            )
        )
        if not no_serve:
            call_command("runserver", addr, use_reloader=False)

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
