"""API-token authentication for the per-call endpoints (decisions), remembered for a few seconds.

A gateway asks on every tool call with the same API token; looking the token and its user's roles
up every time would be two of the decision's four queries. This authenticator remembers a token
that authenticated, with its user and roles, for a few seconds per process. What it remembers is
who is asking, not whether they still may: the decision re-reads the token's validity (revoked,
expired, user inactive, role removed) in its own load statement (``tasks.decisions``), so a
revocation is refused on the very next request in every process, and the entry is then forgotten.
Every other endpoint uses the uncached authenticator.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from rest_framework import exceptions

from accounts.authentication import ApiTokenAuthentication
from accounts.models import TOKEN_PREFIX, ApiToken
from accounts.roles import roles_of
from core.bearer import bearer_value
from core.memo import Expiring
from tasks.decisions import CallerRefused

# Who a token is (its user, with the roles computed on it, and the token), by the secret's digest.
_cache: Expiring[tuple[object, ApiToken]] = Expiring(seconds=5.0, max_entries=1024)


def clear_cache() -> None:
    _cache.clear()


def forget(token: ApiToken | None) -> None:
    """Drop one token from this process's memory (the decision found it may no longer ask)."""
    if token is None:
        return
    _cache.forget(token.digest)


@contextmanager
def still_allowed(token: ApiToken | None) -> Iterator[uuid.UUID | None]:
    """The asking token's id, for the decision to re-check in its own query; when the decision
    finds it may no longer ask, this process forgets it and the request is refused with a 401."""
    try:
        yield getattr(token, "pk", None)
    except CallerRefused:
        forget(token)
        raise exceptions.AuthenticationFailed("invalid, expired or revoked token") from None


class CachedApiTokenAuthentication(ApiTokenAuthentication):
    def authenticate(self, request):
        secret = bearer_value(request)
        if secret is not None and secret.startswith(TOKEN_PREFIX):
            digest = ApiToken.digest_of(secret)
            hit = _cache.get(digest)
            if hit is not None and hit[1].is_usable:
                return hit
            result = super().authenticate(request)
            if result is not None:
                user, token = result
                roles_of(user)  # computed now and kept on the cached user object
                _cache.put(digest, (user, token))
            return result
        return super().authenticate(request)
