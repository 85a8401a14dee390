"""Writes for console records: API tokens and people's roles. Each change is an audit event, and no
secret ever enters the trail (a token's secret is returned once, only its digest is kept)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import Group, User
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiToken, GatewayAudience
from accounts.roles import ALL_ROLES, GATEWAY, has_role
from accounts.selectors import gateway_audiences
from audit import services as audit
from audit.services import ActorLike, RequestLike
from core.audiences import clean_audiences
from core.errors import ValidationFailed

MAX_TOKEN_DAYS = 3650


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # shown to the person once; never stored, never logged


def _token_target(token: ApiToken) -> tuple[str, str, str]:
    return ("api_token", str(token.id), f"{token.user.get_username()}: {token.name}")


def create_api_token(
    *, user: User, actor: ActorLike, name: str = "", expires_days: int | None = None, request: RequestLike | None = None
) -> IssuedToken:
    """Mint a bearer token for ``user``. Returns the secret exactly once."""
    name = (name or "").strip() or "api token"
    if len(name) > 100:
        raise ValidationFailed("at most 100 characters", field="name")
    if expires_days is not None and (
        isinstance(expires_days, bool) or not isinstance(expires_days, int) or not 1 <= expires_days <= MAX_TOKEN_DAYS
    ):
        raise ValidationFailed(f"a whole number of days from 1 to {MAX_TOKEN_DAYS}", field="expires_days")
    if not user.is_active:
        raise ValidationFailed("the user is not active", field="user")
    secret = ApiToken.new_secret()
    now = timezone.now()
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user,
            name=name,
            prefix=secret[:8],
            digest=ApiToken.digest_of(secret),
            created_at=now,
            expires_at=now + timedelta(days=expires_days) if expires_days else None,
        )
        audit.record(
            "token.created",
            actor=actor,
            target=_token_target(token),
            request=request,
            after={"user": user.get_username(), "name": name, "prefix": token.prefix, "expires_at": token.expires_at},
        )
    return IssuedToken(token=token, secret=secret)


def revoke_api_token(
    *, token: ApiToken, actor: ActorLike, request: RequestLike | None = None, reason: str = ""
) -> ApiToken:
    """Revoke now; revoking twice is a no-op."""
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().select_related("user").get(pk=token.pk)
        if token.revoked_at is not None:
            return token
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit.record(
            "token.revoked",
            actor=actor,
            target=_token_target(token),
            request=request,
            before={"status": "active"},
            after={"status": "revoked"},
            reason=reason,
        )
    return token


def set_user_roles(*, user: User, roles: Iterable[str], actor: ActorLike, request: RequestLike | None = None) -> bool:
    """Make ``user``'s Mandate roles exactly ``roles`` (other groups are left alone).
    Returns True when something changed; the change is an audit event with old and new roles."""
    wanted = set(roles)
    unknown = wanted - set(ALL_ROLES)
    if unknown:
        raise ValidationFailed(f"unknown role(s): {', '.join(sorted(unknown))}", field="role")
    with transaction.atomic():
        current = set(user.groups.filter(name__in=ALL_ROLES).values_list("name", flat=True))
        if current == wanted:
            return False
        for name in sorted(wanted - current):
            group, _ = Group.objects.get_or_create(name=name)
            user.groups.add(group)
        removed = Group.objects.filter(name__in=current - wanted)
        if removed:
            user.groups.remove(*removed)
        if hasattr(user, "_mandate_roles"):
            del user._mandate_roles
        audit.record(
            "user.roles_changed",
            actor=actor,
            target=("user", user.pk, user.get_username()),
            before={"roles": sorted(current)},
            after={"roles": sorted(wanted)},
            request=request,
        )
    return True


def set_gateway_audiences(
    *, user: User, audiences: Iterable[str], actor: ActorLike, request: RequestLike | None = None
) -> list[str]:
    """Make the audiences ``user`` (a gateway) serves exactly ``audiences``; an empty list means the
    deployment's default audience. Audited when something changed; decisions see it at once."""
    if not has_role(user, GATEWAY):
        raise ValidationFailed(f"{user.get_username()} is not a gateway", field="username")
    wanted = [] if not list(audiences) else clean_audiences(list(audiences))
    with transaction.atomic():
        type(user).objects.select_for_update().filter(pk=user.pk).first()  # one change at a time per gateway
        current = gateway_audiences(user)
        if current == wanted:
            return current
        GatewayAudience.objects.filter(user=user).delete()
        GatewayAudience.objects.bulk_create(GatewayAudience(user=user, audience=a) for a in wanted)
        audit.record(
            "gateway.audiences_changed",
            actor=actor,
            target=("user", user.pk, user.get_username()),
            before={"audiences": current},
            after={"audiences": wanted},
            request=request,
        )
    return wanted
