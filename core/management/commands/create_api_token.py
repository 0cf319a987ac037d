"""Create (if needed) a user with a role and print its API token key alone on stdout."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from rest_framework.authtoken.models import Token

from core.commands import refuse_hostile
from core.events import event_record
from core.roles import ROLES, role_set


class Command(BaseCommand):
    help = "Create the user if needed, give it a role, and print its API token key."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", choices=ROLES, required=True)
        parser.add_argument("--rotate", action="store_true", help="replace an existing token with a new one")

    @transaction.atomic
    def handle(self, *args, username, role, rotate, **options):
        refuse_hostile({"username": username})
        User = get_user_model()
        username = username.strip()
        if not username or len(username) > 150:
            raise CommandError("the username must be 1 to 150 characters")
        user, created = User.objects.get_or_create(username=username)
        if created:
            user.set_unusable_password()
            user.save()
        role_set(user=user, role=role)
        if rotate:
            Token.objects.filter(user=user).delete()
        token, _ = Token.objects.get_or_create(user=user)
        event_record(
            actor="command:create_api_token",
            verb="grant",
            object_type="user",
            object_id=user.pk,
            object_repr=username,
            after={"role": role, "created": created, "rotated": rotate},
        )
        self.stdout.write(token.key)
