"""Reads of accounts, scoped to the caller."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import QuerySet

from accounts.models import ApiToken

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def api_tokens_of(user: User) -> QuerySet[ApiToken]:
    """A person's own API tokens; nobody lists anyone else's."""
    if not getattr(user, "is_authenticated", False):
        return ApiToken.objects.none()
    return ApiToken.objects.filter(user=user)
