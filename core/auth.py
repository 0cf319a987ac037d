"""Sign-in with a brake on password guessing: after ``PIDNS_LOGIN_MAX_FAILURES`` failed sign-ins
for one user name from one address, that pair is refused for ``PIDNS_LOGIN_LOCKOUT_SECONDS``
(counted in the cache; share it between web processes with ``CACHE_URL``)."""

from __future__ import annotations

import hashlib
import math

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.core.exceptions import ValidationError


def _key(username: str, address: str) -> str:
    digest = hashlib.blake2b(f"{username.casefold()}\x00{address}".encode(), digest_size=16).hexdigest()
    return f"pidns:login-failures:{digest}"


class ThrottledAuthenticationForm(AuthenticationForm):
    def clean(self):
        username = self.cleaned_data.get("username") or ""
        address = self.request.META.get("REMOTE_ADDR", "") if self.request else ""
        key = _key(username, address)
        limit = settings.PIDNS_LOGIN_MAX_FAILURES
        if limit and cache.get(key, 0) >= limit:
            minutes = math.ceil(settings.PIDNS_LOGIN_LOCKOUT_SECONDS / 60)
            raise ValidationError(
                f"Too many failed sign-ins for this user name; try again in {minutes} minutes.", code="throttled"
            )
        try:
            cleaned = super().clean()
        except ValidationError:
            if limit:
                cache.add(key, 0, settings.PIDNS_LOGIN_LOCKOUT_SECONDS)
                try:
                    cache.incr(key)
                except ValueError:  # expired between add and incr
                    cache.set(key, 1, settings.PIDNS_LOGIN_LOCKOUT_SECONDS)
            raise
        cache.delete(key)
        return cleaned
