"""Changing people's roles from the console, with the rules in one place: roles of people who sign
in with single sign-on are the provider's (each sign-in rewrites them), the last identity admin is
never removed, and making someone an identity admin waits for a second admin's approval."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import AdminGrant, ExternalAccount
from accounts.roles import ALL_ROLES, IDENTITY_ADMIN, is_admin
from accounts.services import set_user_roles
from audit import services as audit
from audit.services import ActorLike, RequestLike
from core.errors import InvalidTransition, PermissionDenied, ValidationFailed

SSO_MANAGED = "this person signs in with single sign-on: each sign-in sets their roles from the provider"
LAST_ADMIN = "the last active identity admin keeps the role; make someone else an admin first"


def managed_by_sso(user) -> bool:
    return ExternalAccount.objects.filter(user=user).exists()


def _current(user) -> set[str]:
    return set(user.groups.filter(name__in=ALL_ROLES).values_list("name", flat=True))


def _active_admins():
    users = get_user_model().objects.filter(is_active=True)
    return users.filter(Q(groups__name=IDENTITY_ADMIN) | Q(is_superuser=True)).distinct()


def change_roles(
    *, user, roles: Iterable[str], actor: ActorLike, request: RequestLike | None = None
) -> AdminGrant | None:
    """Make ``user``'s roles ``roles``, except identity-admin, which is requested (returned as the
    pending grant) rather than given. Audited by ``set_user_roles`` and here for the request."""
    if not is_admin(actor):
        raise PermissionDenied("only identity admins change roles")
    if managed_by_sso(user):
        raise ValidationFailed(SSO_MANAGED, field="roles")
    wanted = set(roles)
    unknown = wanted - set(ALL_ROLES)
    if unknown:
        raise ValidationFailed(f"unknown role(s): {', '.join(sorted(unknown))}", field="roles")
    with transaction.atomic():
        current = _current(user)
        if IDENTITY_ADMIN in current and IDENTITY_ADMIN not in wanted:
            others = _active_admins().exclude(pk=user.pk)
            if not others.exists():
                raise ValidationFailed(LAST_ADMIN, field="roles")
        applied = (wanted - {IDENTITY_ADMIN}) | (current & wanted & {IDENTITY_ADMIN})
        set_user_roles(user=user, roles=applied, actor=actor, request=request)
        if IDENTITY_ADMIN in wanted and IDENTITY_ADMIN not in current:
            return request_admin_grant(user=user, actor=actor, request=request)
    return None


def request_admin_grant(*, user, actor: ActorLike, request: RequestLike | None = None) -> AdminGrant:
    existing = AdminGrant.objects.filter(user=user, state=AdminGrant.State.PENDING).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            grant = AdminGrant.objects.create(user=user, requested_by=actor)
            audit.record(
                "user.admin_requested",
                actor=actor,
                target=("user", user.pk, user.get_username()),
                after={"role": IDENTITY_ADMIN, "state": "pending"},
                request=request,
            )
    except IntegrityError:  # another admin asked at the same moment: theirs is the request
        return AdminGrant.objects.get(user=user, state=AdminGrant.State.PENDING)
    return grant


def grant_refusal(*, grant: AdminGrant, actor: ActorLike) -> str | None:
    """Why ``actor`` may not decide ``grant``, said before the click; ``decide_admin_grant`` enforces it."""
    if not is_admin(actor):
        return "only identity admins decide this"
    if grant.requested_by_id == getattr(actor, "pk", None):
        return "another identity admin than the one who asked must approve"
    if grant.user_id == getattr(actor, "pk", None):
        return "nobody approves their own admin role"
    return None


def decide_admin_grant(
    *, grant: AdminGrant, actor: ActorLike, approve: bool, request: RequestLike | None = None
) -> AdminGrant:
    with transaction.atomic():
        grant = AdminGrant.objects.select_for_update().select_related("user").get(pk=grant.pk)
        if grant.state != AdminGrant.State.PENDING:
            raise InvalidTransition(f"this request is already {grant.state}")
        if approve and (why := grant_refusal(grant=grant, actor=actor)):
            raise PermissionDenied(why)
        if not approve and not is_admin(actor):
            raise PermissionDenied("only identity admins decide this")
        grant.state = AdminGrant.State.APPROVED if approve else AdminGrant.State.DENIED
        grant.decided_by = actor
        grant.decided_at = timezone.now()
        grant.save(update_fields=["state", "decided_by", "decided_at"])
        audit.record(
            "user.admin_approved" if approve else "user.admin_denied",
            actor=actor,
            target=("user", grant.user.pk, grant.user.get_username()),
            before={"state": "pending"},
            after={"state": grant.state, "role": IDENTITY_ADMIN},
            request=request,
        )
        if approve:
            set_user_roles(user=grant.user, roles=_current(grant.user) | {IDENTITY_ADMIN}, actor=actor, request=request)
    return grant
