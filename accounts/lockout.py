"""Sign-in lockout on top of django-axes: its database handler counts wrong passwords per account AND
address (settings ``AXES_LOCKOUT_PARAMETERS``), this module puts them on the audit record and lets an
identity admin (console) or an operator (``manage.py unlock_sign_in``) lift a lockout, audited.

Failed sign-ins go on an audit chain of their own (``signin``), so an attacker hammering the form
queues only behind other sign-in events, never in front of lifecycle changes on the ``global``
chain. Each failure up to the limit is one row and the lockout one more; attempts refused while
locked add nothing (axes counts them), so one address adds at most ``limit + 1`` rows per cool-off.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username, get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.db import transaction
from django.db.models import Max, Sum
from django.utils import timezone

from audit import services as audit
from core.errors import ValidationFailed

SIGNIN_CHAIN = "signin"
_SIGN_IN = audit.Actor.system("sign-in")


def _account(username: str | None) -> tuple[str, str, str]:
    name = (username or "")[:150]
    return ("account", name or "(none)", name or "(none)")


def never_locked(request, credentials) -> bool:
    """axes' whitelist: a sign-in without a username (a single sign-on callback) is neither counted
    nor locked. Its failures are the identity provider's to throttle, and a lockout keyed on (no
    account, address) would shut everyone behind one NAT out of single sign-on."""
    return not (credentials or {}).get("username")


class AuditedAxesHandler(AxesDatabaseHandler):
    """axes' database handler (counters in the shared database), plus the audit record."""

    def user_login_failed(self, sender, credentials: dict, request=None, **kwargs):
        # With AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT off, axes' backend flags a request it
        # refused for being locked out before this runs; such a refusal is not a new failure.
        refused_while_locked = bool(getattr(request, "axes_locked_out", False))
        super().user_login_failed(sender, credentials, request=request, **kwargs)
        if request is None or refused_while_locked or never_locked(request, credentials):
            return
        username = get_client_username(request, credentials)
        address = getattr(request, "axes_ip_address", None)
        failures = int(getattr(request, "axes_failures_since_start", 0) or 0)
        with transaction.atomic():
            audit.record(
                "account.sign_in_failed",
                actor=_SIGN_IN,
                target=_account(username),
                after={"address": address, "failures": failures, "limit": settings.AXES_FAILURE_LIMIT},
                request=request,
                chain=SIGNIN_CHAIN,
            )
            if getattr(request, "axes_locked_out", False):
                audit.record(
                    "account.locked_out",
                    actor=_SIGN_IN,
                    target=_account(username),
                    after={
                        "address": address,
                        "failures": failures,
                        "minutes": settings.MANDATE_LOGIN_LOCKOUT_MINUTES,
                    },
                    reason=f"{failures} wrong passwords from {address}",
                    request=request,
                    chain=SIGNIN_CHAIN,
                )


@dataclass(frozen=True)
class Lockout:
    username: str
    address: str | None
    failures: int
    last_attempt: datetime
    until: datetime


def locked_sign_ins() -> list[Lockout]:
    """Account and address pairs locked now, most recent first (for the console's lockout page)."""
    cool_off = get_cool_off()
    since = timezone.now() - cool_off
    rows = (
        AccessAttempt.objects.filter(attempt_time__gte=since)
        .values("username", "ip_address")
        .annotate(failures=Sum("failures_since_start"), last=Max("attempt_time"))
        .filter(failures__gte=settings.AXES_FAILURE_LIMIT)
        .order_by("-last")[:500]
    )
    return [Lockout(r["username"] or "", r["ip_address"], r["failures"], r["last"], r["last"] + cool_off) for r in rows]


def unlock_sign_in(*, username: str, address: str | None = None, actor, reason: str = "", request=None) -> int:
    """Lift the lockout of ``username`` (from ``address`` only, when given; from everywhere
    otherwise), audited. Returns how many counters were cleared; 0 means it was not locked."""
    username = (username or "").strip()
    if not username:
        raise ValidationFailed("the account to unlock", field="username")
    if address:
        try:
            address = str(ipaddress.ip_address(address.strip()))
        except ValueError:
            raise ValidationFailed("an IPv4 or IPv6 address", field="address") from None
    with transaction.atomic():
        attempts = AccessAttempt.objects.filter(username=username)
        if address:
            attempts = attempts.filter(ip_address=address)
        addresses = sorted({a for a in attempts.values_list("ip_address", flat=True) if a})
        cleared, _ = attempts.delete()
        if cleared:
            audit.record(
                "account.unlocked",
                actor=actor,
                target=_account(username),
                after={"addresses": addresses},
                reason=reason,
                request=request,
                chain=SIGNIN_CHAIN,
            )
    return cleared
