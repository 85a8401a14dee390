"""Single sign-on for people: OpenID Connect login to the console (loaded only when
``MANDATE_OIDC_ENABLED``; see the "Single sign-on" block in settings).

mozilla-django-oidc runs the authorization code flow with PKCE, ``state`` and ``nonce``. On top of it:

- the provider's endpoints come from its discovery document (fetched once per process);
- the ID token's ``iss`` must be the configured issuer and its ``aud`` must hold our client id (the
  library checks neither), and the userinfo ``sub`` must be the ID token's (OIDC Core §5.3.2);
- people are linked by (issuer, ``sub``), never by e-mail: a first sign-in creates a new user, it
  never takes over a local account;
- roles come from a claim (``groups`` by default) through ``MANDATE_OIDC_ROLE_MAP`` and are set
  afresh at every sign-in;
- someone whose claims grant no role (or who is outside ``MANDATE_OIDC_ALLOWED_GROUPS``) is refused,
  and an account they already had here is deactivated and loses its roles, so their open console
  sessions end too. When the provider lets them in again, the account comes back — unless an admin
  here deactivated it.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import urllib.request

import jwt
import requests
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation
from django.db import transaction
from django.http import HttpResponseRedirect
from django.shortcuts import resolve_url
from django.urls import path
from django.utils import timezone
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from accounts.roles import ALL_ROLES
from audit import services as audit
from identities.models_oidc import ExternalAccount

logger = logging.getLogger(__name__)

_USERNAME_RE = re.compile(r"^[\w.@+-]{1,120}$")
_config: dict | None = None
_config_lock = threading.Lock()


def provider_config() -> dict:
    """The provider's discovery document, fetched once per process and checked to name our issuer."""
    global _config
    with _config_lock:
        if _config is None:
            request = urllib.request.Request(  # noqa: S310 (the URL comes from settings)
                settings.MANDATE_OIDC_DISCOVERY_URL,
                headers={"Accept": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=settings.OIDC_TIMEOUT) as response:  # noqa: S310
                document = json.loads(response.read(512 * 1024))
            if document.get("issuer") != settings.MANDATE_OIDC_ISSUER:
                raise ImproperlyConfigured("the OpenID provider's discovery document names another issuer")
            _config = document
        return _config


def _forget_provider_config() -> None:
    global _config
    with _config_lock:
        _config = None


def roles_from_claims(claims: dict) -> set[str]:
    values = claims.get(settings.MANDATE_OIDC_ROLE_CLAIM)
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list):
        return set()
    held = {v for v in values if isinstance(v, str)}
    return {role for role, groups in settings.MANDATE_OIDC_ROLE_MAP.items() if held & groups}


def refusal_of(claims: dict, roles: set[str]) -> str:
    """Why these claims may not sign in here, or '' when they may."""
    allowed = set(settings.MANDATE_OIDC_ALLOWED_GROUPS)
    if allowed:
        held = claims.get(settings.MANDATE_OIDC_ROLE_CLAIM)
        held = {held} if isinstance(held, str) else set(held) if isinstance(held, list) else set()
        if not held & allowed:
            return "not in a group allowed to use Mandate"
    if not roles:
        return "the provider grants no Mandate role"
    if claims.get("email_verified") is False and claims.get("email"):
        return "the provider has not verified the e-mail address"
    return ""


class MandateOIDCBackend(OIDCAuthenticationBackend):
    def __init__(self, *args, **kwargs):
        # Django builds every backend for every sign-in, password ones included: nothing here may
        # reach the provider, or a provider outage would lock local accounts out too.
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        self.OIDC_RP_CLIENT_SECRET = settings.OIDC_RP_CLIENT_SECRET
        self.OIDC_RP_SIGN_ALGO = settings.OIDC_RP_SIGN_ALGO
        self.OIDC_RP_IDP_SIGN_KEY = None
        self.UserModel = get_user_model()

    def authenticate(self, request, **kwargs):
        if request is None or not (request.GET.get("code") and request.GET.get("state")):
            return None
        config = provider_config()
        self.OIDC_OP_TOKEN_ENDPOINT = config["token_endpoint"]
        self.OIDC_OP_USER_ENDPOINT = config["userinfo_endpoint"]
        self.OIDC_OP_JWKS_ENDPOINT = config["jwks_uri"]
        return super().authenticate(request, **kwargs)

    # --- the ID token ---------------------------------------------------------------------------
    def verify_token(self, token, **kwargs):
        payload = super().verify_token(token, **kwargs)
        aud = payload.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if payload.get("iss") != settings.MANDATE_OIDC_ISSUER:
            raise SuspiciousOperation("ID token from another issuer")
        if self.OIDC_RP_CLIENT_ID not in audiences or (
            len(audiences) > 1 and payload.get("azp") != self.OIDC_RP_CLIENT_ID
        ):
            raise SuspiciousOperation("ID token meant for another client")
        if not isinstance(payload.get("sub"), str) or not payload["sub"]:
            raise SuspiciousOperation("ID token without subject")
        self._id_claims = payload
        return payload

    def _verify_jws(self, payload, key):
        try:
            return jwt.decode(
                payload, key, algorithms=[self.OIDC_RP_SIGN_ALGO], options={"verify_aud": False}, leeway=60
            )
        except jwt.PyJWTError:
            raise SuspiciousOperation("ID token verification failed") from None

    # --- the person -----------------------------------------------------------------------------
    def get_or_create_user(self, access_token, id_token, payload):
        userinfo = self.get_userinfo(access_token, id_token, payload)
        if userinfo.get("sub") != payload["sub"]:
            raise SuspiciousOperation("userinfo is about someone else than the ID token")
        claims = {**payload, **userinfo}
        roles = roles_from_claims(claims)
        refusal = refusal_of(claims, roles)
        with transaction.atomic():
            account = (
                ExternalAccount.objects.select_for_update()
                .select_related("user")
                .filter(issuer=settings.MANDATE_OIDC_ISSUER, subject=payload["sub"])
                .first()
            )
            if refusal:
                if account is not None:
                    self._refuse_account(account, refusal)
                logger.info("single sign-on refused for %s: %s", payload["sub"], refusal)
                return None
            if account is None:
                account = self._create_account(claims)
            user = account.user
            if not user.is_active:
                if account.refused_at is None:
                    logger.info("single sign-on refused for %s: deactivated here", user.get_username())
                    return None
                user.is_active = True
                user.save(update_fields=["is_active"])
                audit.record(
                    "user.reactivated",
                    actor=audit.Actor.system("sso"),
                    target=user,
                    before={"is_active": False},
                    after={"is_active": True},
                    reason="the OpenID provider lets this person in again",
                )
            self._set_roles(account, roles)
            self._update_profile(user, claims)
            account.refused_at = None
            account.last_login_at = timezone.now()
            account.save(update_fields=["roles", "refused_at", "last_login_at"])
        return user

    def filter_users_by_claims(self, claims):  # the library's e-mail matching is never used
        return self.UserModel.objects.none()

    def get_user(self, user_id):
        user = super().get_user(user_id)
        return user if user is not None and user.is_active else None

    def _create_account(self, claims: dict) -> ExternalAccount:
        user = self.UserModel(username=self._free_username(claims), email=str(claims.get("email", ""))[:254])
        user.set_unusable_password()
        user.save()
        account = ExternalAccount.objects.create(user=user, issuer=settings.MANDATE_OIDC_ISSUER, subject=claims["sub"])
        audit.record(
            "user.created",
            actor=audit.Actor.system("sso"),
            target=user,
            after={
                "username": user.username,
                "email": user.email,
                "issuer": account.issuer,
                "subject": account.subject,
            },
            reason="first single sign-on",
        )
        return account

    def _free_username(self, claims: dict) -> str:
        base = ""
        for candidate in (claims.get("preferred_username"), str(claims.get("email", "")).split("@")[0]):
            if isinstance(candidate, str) and _USERNAME_RE.fullmatch(candidate):
                base = candidate
                break
        base = base or "sso-" + re.sub(r"[^\w.@+-]", "", claims["sub"])[:40]
        name, n = base, 1
        while self.UserModel.objects.filter(username__iexact=name).exists():
            n += 1
            name = f"{base}-{n}"
        return name

    def _update_profile(self, user, claims: dict) -> None:
        fields = {
            "email": str(claims.get("email", ""))[:254],
            "first_name": str(claims.get("given_name", ""))[:150],
            "last_name": str(claims.get("family_name", ""))[:150],
        }
        changed = [k for k, v in fields.items() if v and getattr(user, k) != v]
        for k in changed:
            setattr(user, k, fields[k])
        if changed:
            user.save(update_fields=changed)

    def _set_roles(self, account: ExternalAccount, roles: set[str]) -> None:
        user = account.user
        before = set(user.groups.filter(name__in=ALL_ROLES).values_list("name", flat=True))
        if before == roles:
            account.roles = sorted(roles)
            return
        user.groups.remove(*Group.objects.filter(name__in=before - roles))
        for role in roles - before:
            user.groups.add(Group.objects.get_or_create(name=role)[0])
        account.roles = sorted(roles)
        audit.record(
            "user.roles_changed",
            actor=audit.Actor.system("sso"),
            target=user,
            before={"roles": sorted(before)},
            after={"roles": sorted(roles)},
            reason="roles mapped from the OpenID provider's claims",
        )

    def _refuse_account(self, account: ExternalAccount, refusal: str) -> None:
        user = account.user
        before = {
            "is_active": user.is_active,
            "roles": sorted(user.groups.filter(name__in=ALL_ROLES).values_list("name", flat=True)),
        }
        user.groups.remove(*Group.objects.filter(name__in=ALL_ROLES))
        if user.is_active:
            user.is_active = False
            user.save(update_fields=["is_active"])
            account.refused_at = timezone.now()
        account.roles = []
        account.save(update_fields=["roles", "refused_at"])
        audit.record(
            "user.deactivated",
            actor=audit.Actor.system("sso"),
            target=user,
            before=before,
            after={"is_active": user.is_active, "roles": []},
            reason=f"single sign-on refused: {refusal}",
        )


# --- views ------------------------------------------------------------------------------------------


def _sso_unavailable(request):
    messages.error(request, "Single sign-on is unavailable right now; try again shortly.")
    return HttpResponseRedirect(resolve_url(settings.LOGIN_URL))


class SignInView(OIDCAuthenticationRequestView):
    def __init__(self, *args, **kwargs):
        super(OIDCAuthenticationRequestView, self).__init__(*args, **kwargs)  # no settings lookups
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID

    def get(self, request):
        try:
            self.OIDC_OP_AUTH_ENDPOINT = provider_config()["authorization_endpoint"]
        except (OSError, ValueError, KeyError, ImproperlyConfigured) as exc:
            logger.warning("OpenID provider unreachable or misconfigured: %s", exc)
            return _sso_unavailable(request)
        return super().get(request)


class CallbackView(OIDCAuthenticationCallbackView):
    def login_failure(self):
        messages.error(self.request, "Single sign-on did not let you in. Ask an identity admin if you think it should.")
        return HttpResponseRedirect(resolve_url(settings.LOGIN_URL))

    def get(self, request):
        try:
            return super().get(request)
        except SuspiciousOperation as exc:  # a stale or forged state, a bad ID token: refuse, never a 500
            logger.warning("single sign-on callback refused: %s", exc)
            return self.login_failure()
        except (requests.RequestException, OSError, ValueError, KeyError, ImproperlyConfigured) as exc:
            # The provider refused the code, or could not be reached.
            logger.warning("single sign-on callback failed: %s", exc)
            return self.login_failure()


def context(request):
    return {"mandate_sso_enabled": True, "mandate_sso_label": settings.MANDATE_OIDC_BUTTON_LABEL}


urlpatterns = [
    path("authenticate/", SignInView.as_view(), name="oidc_authentication_init"),
    path("callback/", CallbackView.as_view(), name="oidc_authentication_callback"),
]
