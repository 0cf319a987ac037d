"""Sign-in forms with a brake on password guessing (:mod:`core.throttles`), for the dashboard and the
Django admin alike. An attempt is counted before its password is checked, so many guesses sent at
once are counted, and refused, as one after another."""

from __future__ import annotations

import math

from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

from .throttles import client_address, sign_in_reserve, sign_in_succeeded


class _Throttled:
    def clean(self):
        username = self.cleaned_data.get("username") or ""
        address = client_address(self.request)
        wait = sign_in_reserve(username, address)
        if wait is not None:
            raise ValidationError(
                f"Too many sign-in attempts for this user name; try again in {math.ceil(wait / 60)} minutes.",
                code="throttled",
            )
        cleaned = super().clean()
        sign_in_succeeded(username, address)
        return cleaned


class ThrottledAuthenticationForm(_Throttled, AuthenticationForm):
    """The dashboard's sign-in form."""


class ThrottledAdminAuthenticationForm(_Throttled, AdminAuthenticationForm):
    """The Django admin's sign-in form."""
