"""Roles are Django groups; superusers hold every role."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

IDENTITY_ADMIN = "identity-admin"
AGENT_OWNER = "agent-owner"
AUDITOR = "auditor"
GATEWAY = "gateway"
ALL_ROLES = (IDENTITY_ADMIN, AGENT_OWNER, AUDITOR, GATEWAY)

User = AbstractBaseUser | AnonymousUser


def roles_of(user) -> frozenset[str]:
    """The user's roles, cached on the user object for the request."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return frozenset()
    cached = getattr(user, "_mandate_roles", None)
    if cached is None:
        if user.is_superuser:
            cached = frozenset(ALL_ROLES)
        else:
            cached = frozenset(user.groups.filter(name__in=ALL_ROLES).values_list("name", flat=True))
        user._mandate_roles = cached
    return cached


def has_role(user, *roles: str) -> bool:
    return bool(roles_of(user).intersection(roles))


def is_admin(user) -> bool:
    return has_role(user, IDENTITY_ADMIN)


def can_read_all(user) -> bool:
    """Admins and auditors see every agent; owners only their own."""
    return has_role(user, IDENTITY_ADMIN, AUDITOR)
