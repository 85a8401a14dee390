"""``Authorization: Bearer <api token>`` for people and automation."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from accounts.models import TOKEN_PREFIX, ApiToken
from accounts.roles import ALL_ROLES
from core.bearer import bearer_value
from core.memo import Expiring
from core.sql import PreparedValues

# last_used_at is a hint for people, not an audit record: write it at most once a minute.
_LAST_USED_GRANULARITY = timedelta(seconds=60)


def _note_use(token_id, last_used_at, now) -> None:
    if last_used_at is None or now - last_used_at > _LAST_USED_GRANULARITY:
        ApiToken.objects.filter(pk=token_id).update(last_used_at=now)


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        secret = bearer_value(request)
        if secret is None:
            return None
        if not secret.startswith(TOKEN_PREFIX):
            # Not an API token (perhaps an agent credential): let another authenticator try.
            return None
        token = ApiToken.objects.select_related("user").filter(digest=ApiToken.digest_of(secret)).first()
        if token is None or not token.is_usable or not token.user.is_active:
            raise exceptions.AuthenticationFailed("invalid, expired or revoked token")
        _note_use(token.pk, token.last_used_at, timezone.now())
        return token.user, token

    def authenticate_header(self, request):
        return self.keyword


@dataclass(frozen=True)
class ApiCaller:
    token_id: uuid.UUID
    user_id: int
    roles: frozenset[str]


# The token, its user and the user's roles in one statement compiled once per process (a join to
# the groups gives a row per group; a user in none still gives one row, its group name NULL).
_caller_by_digest = PreparedValues(
    lambda digest: (
        ApiToken.objects.filter(digest=digest)
        .order_by()
        .values_list(
            "id",
            "revoked_at",
            "expires_at",
            "last_used_at",
            "user_id",
            "user__is_active",
            "user__is_superuser",
            "user__groups__name",
        )
    ),
    sample="0" * 64,
    key="digest",
)


def api_caller(request) -> ApiCaller | None:
    """``ApiTokenAuthentication`` for a per-call endpoint that needs only who asks and their roles
    (``/oauth/introspect``): the same refusals, read fresh on every request — revoked, expired,
    user deactivated, role removed all count from the next request — in one query instead of two
    (the token with its user, then the roles). None when no API token was sent."""
    secret = bearer_value(request)
    if secret is None or not secret.startswith(TOKEN_PREFIX):
        return None
    return _caller_by(ApiToken.digest_of(secret))


def _caller_by(digest: str) -> ApiCaller:
    rows = _caller_by_digest.fetch_all(digest)
    now = timezone.now()
    first = rows[0] if rows else None
    if (
        first is None
        or not ApiToken.usable(first["revoked_at"], first["expires_at"], now)
        or not first["user__is_active"]
    ):
        raise exceptions.AuthenticationFailed("invalid, expired or revoked token")
    _note_use(first["id"], first["last_used_at"], now)
    if first["user__is_superuser"]:
        roles = frozenset(ALL_ROLES)
    else:
        roles = frozenset(row["user__groups__name"] for row in rows) & frozenset(ALL_ROLES)
    return ApiCaller(first["id"], first["user_id"], roles)


# --- a caller remembered for a few seconds per process ---------------------------------------------
# A gateway introspects on every tool call with the same API token. What is remembered is who asks
# (the token's id, its user, their roles), never whether they still may: the endpoint reads that in
# the statement it sends anyway (``tasks.decisions.standing_sql``), so a token revoked or expired, a
# user deactivated or a role removed is refused on the very next request in every process, and the
# entry is forgotten (``forget_api_caller``). The decisions' authenticator does the same
# (tasks/api/authentication.py).

_remembered: Expiring[ApiCaller] = Expiring(seconds=5.0, max_entries=1024)


def remembered_api_caller(request, roles: frozenset[str]) -> tuple[ApiCaller | None, bool]:
    """``api_caller``, remembered by this process for a few seconds once it answered a caller
    holding one of ``roles``: ``(caller, True)`` when it comes from memory and must be re-checked,
    ``(caller, False)`` when it was read now. A caller with none of ``roles`` is not remembered, so
    a role granted counts from the next request too."""
    secret = bearer_value(request)
    if secret is None or not secret.startswith(TOKEN_PREFIX):
        return None, False
    digest = ApiToken.digest_of(secret)
    remembered = _remembered.get(digest)
    if remembered is not None:
        return remembered, True
    caller = _caller_by(digest)
    if caller.roles & roles:
        _remembered.put(digest, caller)
    return caller, False


def forget_api_caller(request) -> None:
    """This process forgets the request's API token (the endpoint found it may no longer ask)."""
    secret = bearer_value(request)
    if secret is not None:
        _remembered.forget(ApiToken.digest_of(secret))


def forget_all_api_callers() -> None:
    _remembered.clear()


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An API token (mdt_…)."}


# Where an agent's own credential (a JWT-SVID) is accepted, for the refusal below.
AGENT_CREDENTIAL_ENDPOINTS = (
    "POST /api/v1/events (as the Bearer header), POST /api/v1/decisions (in the body's 'token', "
    "sent by a gateway with its own API token), POST /oauth/token (as subject_token) and /oauth/introspect"
)


class AgentCredentialRefusal(authentication.BaseAuthentication):
    """Placed after the API-token scheme: a Bearer value that is not an API token but has the shape
    of a JWT is an agent credential sent where only people's API tokens are accepted. Say so, and
    where it is accepted, instead of DRF's "credentials were not provided"."""

    keyword = "Bearer"

    def authenticate(self, request):
        secret = bearer_value(request)
        if secret is None or secret.startswith(TOKEN_PREFIX):
            return None
        if secret.count(".") == 2:
            raise exceptions.AuthenticationFailed(
                "this is an agent credential; this endpoint accepts API tokens (mdt_…) only. "
                f"Agent credentials are accepted at {AGENT_CREDENTIAL_ENDPOINTS}"
            )
        raise exceptions.AuthenticationFailed("not an API token (they start with mdt_) nor an agent credential")

    def authenticate_header(self, request):
        return self.keyword


class AgentCredentialRefusalScheme(OpenApiAuthenticationExtension):
    """The refusal accepts nothing, so it adds no security scheme to the document."""

    target_class = "accounts.authentication.AgentCredentialRefusal"
    name: list[str] = []

    def get_security_requirement(self, auto_schema):
        return None

    def get_security_definition(self, auto_schema):
        return []
