"""API tokens for the signed-in user: create (secret shown once), list, revoke."""

from __future__ import annotations

from cryptography.fernet import InvalidToken
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts import services
from accounts.models import ApiToken
from console.views._common import done, form_number, refused, sort_choice, sort_column, sort_order
from core.errors import DomainError
from identities.keys import decrypt_private_key, encrypt_private_key


def _signed_in(view):
    from functools import wraps

    from django.contrib.auth.views import redirect_to_login

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        # Any signed-in user may hold tokens: gateways and automation accounts need them most.
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        return view(request, *args, **kwargs)

    return wrapper


# One person's tokens (at most TOKENS_SHOWN): a small set, so any dated or named column may order it.
TOKENS_SHOWN = 200
TOKEN_SORTS = {"name": "name", "created": "created_at", "expires": "expires_at", "last-used": "last_used_at"}
TOKEN_DEFAULT_SORT = "-created"
TOKEN_COLUMNS = (
    ("name", "Name"),
    ("", "Prefix"),
    ("", "Status"),
    ("created", "Created"),
    ("expires", "Expires"),
    ("last-used", "Last used"),
    ("", "Actions"),
)

SECRET_FLASH = "console:new-token"
# The new token's secret waits in the session for the page the redirect leads to, sealed with the
# key-encryption key (MultiFernet, as signing keys are): the session table holds no readable secret,
# and a seal older than this is not opened.
SECRET_SHOWN_WITHIN_SECONDS = 120


@_signed_in
def token_list(request):
    """GET lists the tokens, and once shows the secret of the one just created (from the session,
    then forgotten). POST creates one and redirects (POST-redirect-GET): a reload never mints a
    second token, and the secret never sits in a page the browser may re-submit."""
    sort = sort_choice(request, TOKEN_SORTS, TOKEN_DEFAULT_SORT)
    context = {
        "tokens": list(
            ApiToken.objects.filter(user=request.user).order_by(*sort_order(sort, TOKEN_SORTS))[:TOKENS_SHOWN]
        ),
        "columns": [sort_column(sort, key, label, hidden=label == "Actions") for key, label in TOKEN_COLUMNS],
        "secret": None,
        "created": None,
        "error": None,
        "values": {},
    }
    if request.method == "POST":
        values = request.POST.dict()
        raw_days = values.get("expires_days", "").strip()
        expires = form_number(raw_days) if raw_days else None
        try:
            issued = services.create_api_token(
                user=request.user,
                actor=request.user,
                name=values.get("name", ""),
                expires_days=expires,
                request=request,
            )
        except DomainError as exc:
            context.update(error=exc, values=values)
            return render(request, "console/tokens.html", context, status=400)
        # Kept in this session only until the next page shows it, sealed; the token row holds a digest.
        sealed = encrypt_private_key(issued.secret.encode()).decode()
        request.session[SECRET_FLASH] = {"id": str(issued.token.pk), "sealed": sealed}
        return redirect(reverse("tokens"))
    flash = request.session.pop(SECRET_FLASH, None)
    if flash:
        created = next((t for t in context["tokens"] if str(t.pk) == flash.get("id")), None)
        secret = _unseal(flash.get("sealed"))
        if created is not None and secret is not None:
            context.update(secret=secret, created=created)
    response = render(request, "console/tokens.html", context)
    if flash:
        response["Cache-Control"] = "no-store"  # the secret is in this page: never from a cache
    return response


def _unseal(sealed: object) -> str | None:
    if not isinstance(sealed, str):
        return None
    try:
        return decrypt_private_key(sealed.encode(), ttl=SECRET_SHOWN_WITHIN_SECONDS).decode()
    except InvalidToken:
        return None


@require_POST
@_signed_in
def token_revoke(request, pk):
    # Someone else's token is invisible here, as if it did not exist.
    token = get_object_or_404(ApiToken.objects.filter(user=request.user), pk=pk)
    back = reverse("tokens")
    try:
        services.revoke_api_token(token=token, actor=request.user, request=request)
    except DomainError as exc:
        return refused(request, back, exc)
    return done(request, back, f"Token {token.name} revoked.")
