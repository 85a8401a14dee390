"""People's open console sessions: recorded at sign-in, listed for identity admins, ended one person
at a time ("sign out everywhere"), and ended when a person is deprovisioned.

Django keeps the sessions themselves (``django_session``); a ``SignInSession`` row beside each says
whose it is and how they signed in, so ending a person's sessions never has to decode every session.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.signals import user_logged_in
from django.contrib.sessions.backends.base import SessionBase
from django.contrib.sessions.models import Session
from django.db import transaction
from django.db.models import QuerySet
from django.dispatch import receiver
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import ApiToken, SignInSession
from accounts.services import revoke_api_token
from audit import services as audit
from audit.services import ActorLike

# The moment a person last proved who they are in this session (seconds since the epoch): step-up
# checks it before sensitive actions.
AUTH_TIME_KEY = "mandate_auth_time"
# When this session signed in, and when it was last used (seconds since the epoch): the absolute
# lifetime (MANDATE_SESSION_MAX_SECONDS) counts from the first, the idle timeout
# (MANDATE_SESSION_IDLE_SECONDS) from the second. Kept by console.middleware.SessionLifetimeMiddleware.
SESSION_STARTED_KEY = "mandate_session_started"
SESSION_SEEN_KEY = "mandate_session_seen"
# The last-used mark is rewritten at most this often, so a busy page does not save its session on
# every request.
SEEN_GRANULARITY_SECONDS = 60


def session_has_ended(session: SessionBase, *, now: float, idle: int, lifetime: int) -> str:
    """Why a signed-in session may not go on ("idle", "lifetime"), or "" when it may. A session
    without marks (signed in before they existed, or by a test's force_login) starts counting now."""
    started = session.setdefault(SESSION_STARTED_KEY, now)
    seen = session.setdefault(SESSION_SEEN_KEY, now)
    if now - float(started) > lifetime:
        return "lifetime"
    if now - float(seen) > idle:
        return "idle"
    return ""


def mark_session_used(session: SessionBase, *, now: float, idle: int, lifetime: int) -> None:
    """Counts this request as activity; the stored session expires when the idle timeout or the
    absolute lifetime would end it, whichever comes first."""
    seen = float(session.get(SESSION_SEEN_KEY, 0))
    if session.modified or "_session_expiry" not in session or now - seen >= SEEN_GRANULARITY_SECONDS:
        session[SESSION_SEEN_KEY] = now
        remaining = float(session[SESSION_STARTED_KEY]) + lifetime - now
        session.set_expiry(max(1, int(min(idle, remaining))))


@receiver(user_logged_in)
def _start_lifetime(sender: object, request: HttpRequest | None, **kwargs: object) -> None:
    """A fresh sign-in starts a fresh absolute lifetime (a step-up confirmation does not)."""
    if request is not None and hasattr(request, "session"):
        now = timezone.now().timestamp()
        request.session[SESSION_STARTED_KEY] = now
        request.session[SESSION_SEEN_KEY] = now
        idle, lifetime = settings.MANDATE_SESSION_IDLE_SECONDS, settings.MANDATE_SESSION_MAX_SECONDS
        request.session.set_expiry(min(idle, lifetime))


def record_sign_in(request: HttpRequest, *, method: str, sid: str = "", auth_time: float | None = None) -> None:
    """Call right after ``django.contrib.auth.login``: the session now has its final key."""
    request.session[AUTH_TIME_KEY] = auth_time if auth_time is not None else timezone.now().timestamp()
    request.session.save()
    SignInSession.objects.update_or_create(
        session_key=request.session.session_key,
        defaults={"user": request.user, "method": method, "sid": sid or "", "created_at": timezone.now()},
    )


def forget_session(session_key: str | None) -> None:
    """Call on sign-out: the session is gone, so is its row."""
    if session_key:
        SignInSession.objects.filter(session_key=session_key).delete()


def open_sessions(user: User) -> QuerySet[SignInSession]:
    """The person's sessions that still exist and have not expired, newest first."""
    live = Session.objects.filter(expire_date__gt=timezone.now()).values("session_key")
    return SignInSession.objects.filter(user=user, session_key__in=live).order_by("-created_at")


def end_sessions(
    *, user: User, actor: ActorLike, reason: str, sid: str | None = None, request: HttpRequest | None = None
) -> int:
    """End the person's sessions (only the provider session ``sid``'s, when given). Returns how many."""
    with transaction.atomic():
        rows = SignInSession.objects.select_for_update().filter(user=user)
        if sid:
            rows = rows.filter(sid=sid)
        keys = list(rows.values_list("session_key", flat=True))
        if not keys:
            return 0
        Session.objects.filter(session_key__in=keys).delete()
        SignInSession.objects.filter(session_key__in=keys).delete()
        audit.record(
            "user.sessions_ended",
            actor=actor,
            target=("user", user.pk, user.get_username()),
            after={"sessions": len(keys), **({"sid": sid} if sid else {})},
            reason=reason,
            request=request,
        )
    return len(keys)


def deactivate_person(*, user: User, actor: ActorLike, reason: str, request: HttpRequest | None = None) -> bool:
    """Deactivate, revoke every API token (revoked, not suspended: reactivating the person later does
    not bring them back) and end every session, all recorded with ``reason``. False when already so."""
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        changed = user.is_active
        if user.is_active:
            user.is_active = False
            user.save(update_fields=["is_active"])
            audit.record(
                "user.deactivated",
                actor=actor,
                target=("user", user.pk, user.get_username()),
                before={"is_active": True},
                after={"is_active": False},
                reason=reason,
                request=request,
            )
        withdraw_access(user=user, actor=actor, reason=reason, request=request)
    return changed


def withdraw_access(*, user: User, actor: ActorLike, reason: str, request: HttpRequest | None = None) -> None:
    """Revoke every live API token of the person and end every session of theirs."""
    with transaction.atomic():
        live = ApiToken.objects.filter(user=user, revoked_at__isnull=True).select_related("user")
        for token in live:
            revoke_api_token(token=token, actor=actor, request=request, reason=reason)
        end_sessions(user=user, actor=actor, reason=reason, request=request)
