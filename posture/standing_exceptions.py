"""Writes for standing exceptions: request, approve, renew, re-certify, retire, and the two sweeps
(expire_due_standing_exceptions, remind_recertifications).

A standing exception is the honest record of a persistent vendor token that cannot be short-lived.
It is approved like an envelope (an identity admin other than the requester), never lasts more than
90 days, and must be re-certified on a schedule. A secret Mandate issues is shown once, at request,
and only its SHA-256 digest is kept; it is valid only while the exception is approved and unexpired.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from accounts.roles import AGENT_OWNER, IDENTITY_ADMIN, has_role, is_admin
from audit import services as audit
from audit.services import ActorLike, RequestLike
from core.errors import InvalidTransition, PermissionDenied, ValidationFailed
from identities.models import Agent
from identities.permissions import require_can_manage
from identities.validators import is_scope
from posture.models import MAX_STANDING_EXCEPTION_DAYS, StandingException

Status = StandingException.Status
SECRET_PREFIX = "mdx_"
SWEEP_CHUNK = 200
DEFAULT_RECERTIFY_DAYS = 30

if TYPE_CHECKING:
    from django.contrib.auth.models import User


@dataclass(frozen=True)
class Requested:
    """A new exception and, when one was asked for, its secret: shown this once, never again."""

    standing_exception: StandingException
    secret: str | None


def standing_exceptions_for(user: User):
    """Exceptions the caller may see: admins and auditors all, owners theirs."""
    return StandingException.objects.visible_to(user).select_related("owner", "agent", "requested_by", "approved_by")


# --- validation ----------------------------------------------------------------------------------


def _text(value, field: str, *, limit: int, required: bool = True) -> str:
    if not isinstance(value, str) or (required and not value.strip()):
        raise ValidationFailed("required", field=field)
    if len(value) > limit:
        raise ValidationFailed(f"at most {limit} characters", field=field)
    return value.strip()


def _days(value, field: str, *, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ValidationFailed(f"a whole number of days from 1 to {maximum}", field=field)
    return value


def _scopes(value, agent: Agent | None) -> list[str]:
    if not isinstance(value, list) or not value or len(value) > 100:
        raise ValidationFailed("a non-empty list of scopes such as 'github:read'", field="scopes")
    for scope in value:
        if not is_scope(scope):
            raise ValidationFailed(f"{str(scope)[:80]!r} is not a scope of the form tool:action", field="scopes")
    if agent is not None:
        outside = sorted(set(value) - set(agent.ceiling))
        if outside:
            raise ValidationFailed(f"outside agent {agent.slug}'s ceiling: {', '.join(outside)}", field="scopes")
    return sorted(set(value))


def _new_secret() -> tuple[str, str, str]:
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    return secret, secret[:8], StandingException.digest_of(secret)


# --- request -------------------------------------------------------------------------------------


def request_standing_exception(
    *,
    actor: ActorLike,
    vendor,
    justification,
    scopes,
    compensating_controls,
    duration_days,
    recertify_every_days=None,
    agent: Agent | None = None,
    owner=None,
    issue_secret: bool = False,
    renews: StandingException | None = None,
    request: RequestLike | None = None,
) -> Requested:
    """Ask for a standing exception (pending until an admin other than the requester approves)."""
    if not (is_admin(actor) or has_role(actor, AGENT_OWNER)):
        raise PermissionDenied("only agent owners and identity admins request standing exceptions")
    owner = owner or (agent.owner if agent is not None else actor)
    if owner.pk != actor.pk and not is_admin(actor):
        raise PermissionDenied("only identity admins request an exception on someone else's behalf")
    if agent is not None and agent.owner_id != owner.pk and not is_admin(actor):
        raise PermissionDenied("only the agent's owner or an identity admin may ask for this agent")
    if agent is not None and agent.status == Agent.Status.RETIRED:
        raise ValidationFailed(f"agent {agent.slug} is retired", field="agent")
    if not isinstance(issue_secret, bool):
        raise ValidationFailed("true or false", field="issue_secret")
    duration = _days(duration_days, "duration_days", maximum=MAX_STANDING_EXCEPTION_DAYS)
    if recertify_every_days is None:
        recertify_every_days = min(DEFAULT_RECERTIFY_DAYS, duration)
    exc = StandingException(
        vendor=_text(vendor, "vendor", limit=200),
        justification=_text(justification, "justification", limit=4000),
        compensating_controls=_text(compensating_controls, "compensating_controls", limit=4000),
        scopes=_scopes(scopes, agent),
        duration_days=duration,
        recertify_every_days=_days(recertify_every_days, "recertify_every_days", maximum=duration),
        owner=owner,
        agent=agent,
        requested_by=actor,
        renews=renews,
    )
    secret = None
    if issue_secret:
        secret, exc.secret_prefix, exc.secret_digest = _new_secret()
    with transaction.atomic():
        exc.save(force_insert=True)
        audit.record(
            "exception.requested",
            actor=actor,
            target=exc,
            after={
                **exc.snapshot(),
                "justification": exc.justification,
                "compensating_controls": exc.compensating_controls,
                "renews": str(renews.id) if renews else None,
            },
            request=request,
        )
    return Requested(exc, secret)


def _lock(exc: StandingException) -> StandingException:
    return StandingException.objects.select_for_update().select_related("owner").get(pk=exc.pk)


def approve_standing_exception(
    *,
    standing_exception: StandingException,
    actor: ActorLike,
    comment: str = "",
    request: RequestLike | None = None,
    now: datetime | None = None,
) -> StandingException:
    """An identity admin other than the requester approves; the hard expiry starts now. Approving a
    renewal retires the exception it renews (and its secret with it)."""
    if not is_admin(actor):
        raise PermissionDenied("only identity admins approve standing exceptions")
    now = now or timezone.now()
    with transaction.atomic():
        exc = _lock(standing_exception)
        if exc.status != Status.PENDING:
            raise InvalidTransition(f"exception is {exc.status}; only pending exceptions can be approved")
        if exc.requested_by_id == actor.pk:
            raise PermissionDenied("nobody approves a standing exception they requested")
        if exc.owner_id == actor.pk:
            raise PermissionDenied("an exception's owner never approves it")
        exc.approved_by = actor
        exc.approved_at = now
        exc.expires_at = now + timedelta(days=exc.duration_days)
        exc.recertify_by = _next_recertification(exc, now)
        old = exc.set_status(
            Status.APPROVED,
            allowed_from=(Status.PENDING,),
            extra_fields=("approved_by", "approved_at", "expires_at", "recertify_by"),
        )
        audit.record(
            "exception.approved",
            actor=actor,
            target=exc,
            before={"status": old},
            after={"status": exc.status, "expires_at": exc.expires_at, "recertify_by": exc.recertify_by},
            reason=comment,
            request=request,
        )
        if exc.renews_id:
            previous = StandingException.objects.select_for_update().get(pk=exc.renews_id)
            if previous.status in StandingException.OPEN_STATES:
                _end(
                    previous,
                    new=Status.RETIRED,
                    verb="exception.retired",
                    actor=actor,
                    reason=f"renewed as {exc.id}",
                    request=request,
                )
    return exc


def _next_recertification(exc: StandingException, now: datetime) -> date:
    due = (now + timedelta(days=exc.recertify_every_days)).date()
    return min(due, exc.expires_at.date()) if exc.expires_at else due


def _require_owner_or_admin(actor: ActorLike, exc: StandingException, what: str) -> None:
    require_can_manage(actor, exc, what, owner="the exception's owner")


def recertify_standing_exception(
    *,
    standing_exception: StandingException,
    actor: ActorLike,
    comment,
    request: RequestLike | None = None,
    now: datetime | None = None,
) -> StandingException:
    """The owner (or an admin) attests the exception is still needed; the next date moves on, never
    past the hard expiry. Re-certifying never extends the expiry: that takes a renewal."""
    _require_owner_or_admin(actor, standing_exception, "re-certify this exception")
    comment = _text(comment, "comment", limit=2000)
    now = now or timezone.now()
    with transaction.atomic():
        exc = _lock(standing_exception)
        if exc.status != Status.APPROVED:
            raise InvalidTransition(f"exception is {exc.status}; only approved exceptions are re-certified")
        before = {"recertify_by": exc.recertify_by}
        exc.recertify_by = _next_recertification(exc, now)
        exc.last_recertified_at = now
        exc.reminded_on = None
        exc.save(update_fields=["recertify_by", "last_recertified_at", "reminded_on"])
        audit.record(
            "exception.recertified",
            actor=actor,
            target=exc,
            before=before,
            after={"recertify_by": exc.recertify_by},
            reason=comment,
            request=request,
        )
    return exc


def renew_standing_exception(
    *,
    standing_exception: StandingException,
    actor: ActorLike,
    justification=None,
    duration_days=None,
    compensating_controls=None,
    request: RequestLike | None = None,
) -> Requested:
    """Never extend in place: a renewal is a new pending exception that, once approved, retires this one.
    If this one carried a Mandate-issued secret, the renewal gets a fresh one (rotation)."""
    _require_owner_or_admin(actor, standing_exception, "renew this exception")
    exc = StandingException.objects.select_related("agent", "owner").get(pk=standing_exception.pk)
    if exc.status not in StandingException.OPEN_STATES:
        raise InvalidTransition(f"exception is {exc.status}; only open exceptions can be renewed")
    if StandingException.objects.filter(renews=exc).exists():
        raise InvalidTransition("a renewal of this exception exists already")
    return request_standing_exception(
        actor=actor,
        vendor=exc.vendor,
        justification=justification or exc.justification,
        scopes=list(exc.scopes),
        compensating_controls=compensating_controls or exc.compensating_controls,
        duration_days=duration_days or exc.duration_days,
        recertify_every_days=min(exc.recertify_every_days, duration_days or exc.duration_days),
        agent=exc.agent,
        owner=exc.owner,
        issue_secret=exc.has_secret,
        renews=exc,
        request=request,
    )


def _end(
    exc: StandingException, *, new: str, verb: str, actor: ActorLike, reason: str, request: RequestLike | None = None
) -> None:
    exc.end_reason = (reason or new)[:500]
    old = exc.set_status(new, allowed_from=StandingException.OPEN_STATES, extra_fields=("end_reason",))
    audit.record(
        verb,
        actor=actor,
        target=exc,
        before={"status": old},
        after={"status": exc.status},
        reason=reason,
        request=request,
    )


def retire_standing_exception(
    *, standing_exception: StandingException, actor: ActorLike, reason: str = "", request: RequestLike | None = None
) -> StandingException:
    """Withdraw a pending exception or end an approved one; its secret stops being valid at once."""
    _require_owner_or_admin(actor, standing_exception, "retire this exception")
    with transaction.atomic():
        exc = _lock(standing_exception)
        if exc.status == Status.RETIRED:
            return exc
        _end(
            exc, new=Status.RETIRED, verb="exception.retired", actor=actor, reason=reason or "retired", request=request
        )
    return exc


def secret_is_valid(secret: str, *, now: datetime | None = None) -> StandingException | None:
    """The approved, unexpired exception a presented vendor secret belongs to, or None."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        return None
    now = now or timezone.now()
    return StandingException.objects.filter(
        secret_digest=StandingException.digest_of(secret), status=Status.APPROVED, expires_at__gt=now
    ).first()


# --- sweeps --------------------------------------------------------------------------------------


def expire_due_standing_exceptions(now: datetime | None = None) -> int:
    """Expire every approved exception past its hard expiry (its secret stops being valid). Safe to
    run twice or in parallel: each row is claimed under its lock and re-checked."""
    now = now or timezone.now()
    actor = audit.Actor.scheduler("expire-exceptions")
    expired = 0
    while True:
        ids = list(
            StandingException.objects.filter(status=Status.APPROVED, expires_at__lte=now)
            .order_by("expires_at")
            .values_list("id", flat=True)[:SWEEP_CHUNK]
        )
        if not ids:
            return expired
        progressed = 0
        for exc_id in ids:
            with transaction.atomic():
                exc = (
                    StandingException.objects.select_for_update()
                    .filter(pk=exc_id, status=Status.APPROVED, expires_at__lte=now)
                    .first()
                )
                if exc is None:
                    continue
                _end(exc, new=Status.EXPIRED, verb="exception.expired", actor=actor, reason="hard expiry reached")
                expired += 1
                progressed += 1
        if not progressed:
            return expired


def remind_recertifications(now: datetime | None = None, *, lead_days: int = 7) -> int:
    """Mail owners (and identity admins) about approved exceptions whose re-certification is due within
    ``lead_days`` or overdue. One reminder per exception per day: the day is claimed with a
    conditional update before the mail goes out. Returns how many reminders were sent."""
    now = now or timezone.now()
    today = now.date()
    horizon = today + timedelta(days=lead_days)
    due = (
        StandingException.objects.filter(status=Status.APPROVED, recertify_by__lte=horizon)
        .exclude(reminded_on=today)
        .select_related("owner", "agent")
        .order_by("recertify_by")
    )
    admins = sorted(
        get_user_model()
        .objects.filter(groups__name=IDENTITY_ADMIN, is_active=True)
        .exclude(email="")
        .values_list("email", flat=True)
        .distinct()
    )
    sent = 0
    for exc in due.iterator(chunk_size=SWEEP_CHUNK):
        claimed = (
            StandingException.objects.filter(pk=exc.pk, status=Status.APPROVED)
            .exclude(reminded_on=today)
            .update(reminded_on=today)
        )
        if not claimed:
            continue  # another run took it
        recipients = sorted({*([exc.owner.email] if exc.owner.email else []), *admins})
        if not recipients:
            continue
        overdue = exc.recertify_by < today
        subject = (
            f"[Mandate] standing exception for {exc.vendor} "
            f"{'is overdue for' if overdue else 'is due for'} re-certification"
        )
        body = (
            f"Vendor: {exc.vendor}\nOwner: {exc.owner.get_username()}\n"
            f"Agent: {exc.agent.slug if exc.agent else '-'}\nScopes: {' '.join(exc.scopes)}\n"
            f"Re-certify by: {exc.recertify_by.isoformat()}\nHard expiry: {exc.expires_at.isoformat()}\n"
            f"Exception: {exc.id}\n\nRe-certify it, renew it or retire it in the Mandate console.\n"
        )
        with transaction.atomic():
            audit.record(
                "exception.reminded",
                actor=audit.Actor.scheduler("remind-recertifications"),
                target=exc,
                after={"recertify_by": exc.recertify_by, "overdue": overdue},
            )
        send_mail(subject, body, None, recipients)
        sent += 1
    return sent
