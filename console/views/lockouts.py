"""Sign-in lockouts: identity admins see which account is locked from which address, and unlock."""

from __future__ import annotations

from django.conf import settings
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.lockout import locked_sign_ins, unlock_sign_in
from accounts.roles import IDENTITY_ADMIN
from console.views._common import console_view, done, refused
from core.errors import DomainError


@require_GET
@console_view(IDENTITY_ADMIN)
def lockout_list(request):
    context = {
        "lockouts": locked_sign_ins(),
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
