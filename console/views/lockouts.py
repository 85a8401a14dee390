"""Sign-in lockouts: identity admins see which account is locked from which address, and unlock."""

from __future__ import annotations

from django.conf import settings
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.lockout import locked_sign_ins, unlock_sign_in
from accounts.roles import IDENTITY_ADMIN
from console.views._common import console_view, done, refused, sort_choice, sort_column
from core.errors import DomainError

# The locks in force now (at most 500, the most recent, accounts.lockout.locked_sign_ins): all of them
# are on the page, so they are ordered here, by any shown column, account then address breaking ties.
LOCKOUT_SORTS = {
    "account": lambda lock: (lock.username, lock.address or ""),
    "address": lambda lock: (lock.address or "", lock.username),
    "failures": lambda lock: (lock.failures, lock.username, lock.address or ""),
    "last-attempt": lambda lock: (lock.last_attempt, lock.username, lock.address or ""),
}
LOCKOUT_DEFAULT_SORT = "-last-attempt"
LOCKOUT_COLUMNS = (
    ("account", "Account"),
    ("address", "Address"),
    ("failures", "Failures"),
    ("last-attempt", "Last attempt"),
    ("", "Locked until"),
    ("", "Actions"),
)


@require_GET
@console_view(IDENTITY_ADMIN)
def lockout_list(request):
    sort = sort_choice(request, LOCKOUT_SORTS, LOCKOUT_DEFAULT_SORT)
    lockouts = sorted(locked_sign_ins(), key=LOCKOUT_SORTS[sort.lstrip("-")], reverse=sort.startswith("-"))
    context = {
        "lockouts": lockouts,
        "columns": [sort_column(sort, key, label, hidden=label == "Actions") for key, label in LOCKOUT_COLUMNS],
        "limit": settings.MANDATE_LOGIN_FAILURE_LIMIT,
        "minutes": settings.MANDATE_LOGIN_LOCKOUT_MINUTES,
    }
    return render(request, "console/lockouts.html", context)


@require_POST
@console_view(IDENTITY_ADMIN)
def lockout_unlock(request):
    back = reverse("sign-in-lockouts")
    username = request.POST.get("username", "")
    address = request.POST.get("address", "") or None
    try:
        cleared = unlock_sign_in(
            username=username,
            address=address,
            actor=request.user,
            reason=request.POST.get("reason", "") or "unlocked in the console",
            request=request,
        )
    except DomainError as exc:
        return refused(request, back, exc)
    if not cleared:
        return refused(request, back, DomainError(f"{username[:150]} is not locked out", field="username"))
    where = f" from {address}" if address else ""
    return done(request, back, f"{username[:150]} unlocked{where}.")
