"""Brakes on guessing and flooding.

* Sign-in (the dashboard's and the admin's): every attempt for one user name from one address is
  counted *before* the password is checked, in one atomic step in the database (shared by every web
  process); past ``PIDNS_LOGIN_MAX_FAILURES`` the pair is refused for ``PIDNS_LOGIN_LOCKOUT_SECONDS``
  without looking at the password. A successful sign-in clears the count.
* The API: DRF throttles per token and per anonymous address (``PIDNS_API_RATES``), and a count of
  bad tokens per address; past the limit, 429 with ``Retry-After``. They count in the cache, shared
  between processes when ``CACHE_URL`` points at Redis.
"""

from __future__ import annotations

import hashlib
import math
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from .models import SignInThrottle


def client_address(request) -> str:
    return request.META.get("REMOTE_ADDR", "") if request is not None else ""


def _key(*parts: str) -> str:
    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=16).hexdigest()


def sign_in_reserve(username: str, address: str) -> int | None:
    """Count one sign-in attempt for (user name, address), atomically. Returns None when the attempt
    may go on, or the seconds left of the lockout when it may not."""
    limit = settings.PIDNS_LOGIN_MAX_FAILURES
    if not limit:
        return None
    key = _key(username.casefold(), address)
    now = timezone.now()
    window = timedelta(seconds=settings.PIDNS_LOGIN_LOCKOUT_SECONDS)
    with transaction.atomic():
        counted = SignInThrottle.objects.filter(key=key, until__gt=now).update(attempts=F("attempts") + 1)
        if not counted:
            try:
                with transaction.atomic():
                    SignInThrottle.objects.update_or_create(key=key, defaults={"attempts": 1, "until": now + window})
            except IntegrityError:  # another attempt created it at the same moment: count on it
                SignInThrottle.objects.filter(key=key).update(attempts=F("attempts") + 1)
        attempts, until = SignInThrottle.objects.filter(key=key).values_list("attempts", "until").get()
    if attempts > limit:
        return max(1, math.ceil((until - now).total_seconds()))
    return None


def sign_in_succeeded(username: str, address: str) -> None:
    SignInThrottle.objects.filter(key=_key(username.casefold(), address)).delete()


def sign_in_prune() -> int:
    return SignInThrottle.objects.filter(until__lt=timezone.now()).delete()[0]


class _SettingsRate:
    """Rates read from settings when used, so that they can be changed without a restart of Python."""

    def get_rate(self):
        return settings.PIDNS_API_RATES.get(self.scope)


class TokenRateThrottle(_SettingsRate, UserRateThrottle):
    """Requests per token (per user) per period."""

    scope = "user"


class AddressRateThrottle(_SettingsRate, AnonRateThrottle):
    """Requests per address per period, for requests without a token."""

    scope = "anon"


class ThrottledTokenAuthentication(TokenAuthentication):
    """Token authentication that counts bad tokens per address: past ``PIDNS_API_BAD_TOKENS`` in a
    minute, the address gets 429 with Retry-After, bad or good token alike, until the minute ends."""

    window = 60

    def authenticate(self, request):
        limit = settings.PIDNS_API_BAD_TOKENS
        key = f"pidns:bad-tokens:{_key(client_address(request))}"
        if limit and (cache.get(key) or 0) >= limit:
            raise exceptions.Throttled(wait=self.window)
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            if limit:
                cache.add(key, 0, self.window)
                try:
                    cache.incr(key)
                except ValueError:  # expired between add and incr
                    cache.set(key, 1, self.window)
            raise
