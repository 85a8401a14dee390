"""Reads of accounts, scoped to the caller."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import ApiToken


def api_tokens_of(user) -> QuerySet[ApiToken]:
    """A person's own API tokens; nobody lists anyone else's."""
    if not getattr(user, "is_authenticated", False):
        return ApiToken.objects.none()
    return ApiToken.objects.filter(user=user)
