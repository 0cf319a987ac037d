"""Roles: viewer < operator < admin, held as Django groups and enforced server-side.

Viewer: reads and evaluations. Operator: plus rollouts and overrides. Admin: plus inventory and
credentials. A superuser is an admin.
"""

from __future__ import annotations

from django.contrib.auth.models import Group
from rest_framework.permissions import SAFE_METHODS, BasePermission

VIEWER = "viewer"
OPERATOR = "operator"
ADMIN = "admin"
ROLES = (VIEWER, OPERATOR, ADMIN)
_RANK = {role: rank for rank, role in enumerate(ROLES, start=1)}


def user_role(user) -> str | None:
    """The highest role a user holds, or None. Cached on the user object for the request."""
    if not user or not user.is_authenticated or not user.is_active:
        return None
    cached = getattr(user, "_pidns_role", False)
    if cached is not False:
        return cached
    if user.is_superuser:
        role = ADMIN
    else:
        names = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        role = max(names, key=_RANK.__getitem__) if names else None
    user._pidns_role = role
    return role


def has_role(user, needed: str) -> bool:
    role = user_role(user)
    return role is not None and _RANK[role] >= _RANK[needed]


def role_set(*, user, role: str) -> None:
    """Give ``user`` exactly ``role`` (removing the other roles)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
    groups = {name: Group.objects.get_or_create(name=name)[0] for name in ROLES}
    user.groups.remove(*[g for name, g in groups.items() if name != role])
    user.groups.add(groups[role])
    if hasattr(user, "_pidns_role"):
        del user._pidns_role


class _RolePermission(BasePermission):
    role = VIEWER
    message = "You need the viewer role."

    def has_permission(self, request, view):
        return has_role(request.user, self.role)


class IsViewer(_RolePermission):
    role = VIEWER
    message = "You need the viewer role or higher."


class IsOperator(_RolePermission):
    role = OPERATOR
    message = "You need the operator role or higher."


class IsAdmin(_RolePermission):
    role = ADMIN
    message = "You need the admin role."


class ReadViewerWriteAdmin(BasePermission):
    """Inventory: viewers read, admins write."""

    message = "Reading needs the viewer role; changing the inventory needs the admin role."

    def has_permission(self, request, view):
        needed = VIEWER if request.method in SAFE_METHODS else ADMIN
        return has_role(request.user, needed)
