"""Reads of accounts, scoped to the caller."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import QuerySet

from accounts.models import ApiToken, GatewayAudience

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def api_tokens_of(user: User) -> QuerySet[ApiToken]:
    """A person's own API tokens; nobody lists anyone else's."""
    if not getattr(user, "is_authenticated", False):
        return ApiToken.objects.none()
    return ApiToken.objects.filter(user=user)


def gateway_audiences(user: User) -> list[str]:
    """The audiences ``user`` declared it serves, in the order declared (none: the default only)."""
    return list(GatewayAudience.objects.filter(user=user).order_by("id").values_list("audience", flat=True))


def gateways() -> QuerySet[User]:
    """Active users with the gateway role, by username."""
    from django.contrib.auth import get_user_model

    from accounts.roles import GATEWAY

    return get_user_model().objects.filter(groups__name=GATEWAY, is_active=True).distinct().order_by("username")
