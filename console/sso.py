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
  here deactivated it; API tokens it had are revoked, never just suspended.

Only the callback view of the browser that started a flow redeems a sign-in code (with the state,
PKCE verifier and nonce from that browser's session): the backend does nothing for any other
``authenticate()`` call, such as the password form's. SSO sessions are re-validated with the
provider every ``MANDATE_OIDC_REVALIDATE_SECONDS`` (refresh token; without one the session ends), a
back-channel logout from the provider ends them at once, and signing out here ends the provider's
session too when it advertises ``end_session_endpoint``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.parse
import urllib.request

import jwt
import requests
from django.conf import settings
from django.contrib import auth, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation
from django.db import transaction
from django.db.models import Q
from django.http import HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import resolve_url
from django.urls import path
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from accounts.models import ExternalAccount, SignInSession
from accounts.roles import ALL_ROLES
from accounts.sessions import end_sessions, forget_session, record_sign_in, withdraw_access
from audit import services as audit
from identities.keys import decrypt_private_key, encrypt_private_key

logger = logging.getLogger(__name__)

_USERNAME_RE = re.compile(r"^[\w.@+-]{1,120}$")
CALLBACK_URL_NAME = "oidc_authentication_callback"
# What an SSO session keeps: {"account": pk, "validated_at": epoch seconds}; and the ID token, the
# hint RP-initiated logout sends back to the provider.
SESSION_KEY = "mandate_sso"
ID_TOKEN_KEY = "mandate_sso_id_token"
ACR_KEY = "mandate_sso_acr"
BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"


class ProviderUnavailable(Exception):
    """The provider could not be asked (network, 5xx, a broken answer): nothing is known about the person."""


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
        # Only our callback view redeems a code, with the nonce and PKCE verifier it has just taken
        # out of this browser's session for that state. Any other authenticate() call — the password
        # form, /admin/login/ — whose URL happens to carry ?code=&state= gets nothing from here.
        if request is None or not (request.GET.get("code") and request.GET.get("state")):
            return None
        if not kwargs.get("nonce") or not kwargs.get("code_verifier"):
            return None
        match = getattr(request, "resolver_match", None)
        if match is None or match.url_name != CALLBACK_URL_NAME:
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
        if "azp" in payload and payload["azp"] != self.OIDC_RP_CLIENT_ID:
            raise SuspiciousOperation("ID token authorized for another client")
        if not isinstance(payload.get("sub"), str) or not payload["sub"]:
            raise SuspiciousOperation("ID token without subject")
        self._id_claims = payload
        return payload

    def _verify_jws(self, payload, key):
        try:
            return jwt.decode(
                payload,
                key,
                algorithms=[self.OIDC_RP_SIGN_ALGO],
                options={"verify_aud": False, "require": ["exp", "iat"]},
                leeway=60,
            )
        except jwt.PyJWTError:
            raise SuspiciousOperation("ID token verification failed") from None

    def get_token(self, payload):
        self._token_info = super().get_token(payload)
        return self._token_info

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
            token_info = getattr(self, "_token_info", None) or {}
            account.refused_at = None
            account.last_login_at = account.validated_at = timezone.now()
            account.refresh_token_encrypted = _encrypt_refresh_token(token_info)
            account.save(
                update_fields=["roles", "refused_at", "last_login_at", "validated_at", "refresh_token_encrypted"]
            )
        # What the callback view needs for this browser's session (not stored on the user).
        user.mandate_sso = {
            "account": account.pk,
            "sid": str(payload.get("sid") or ""),
            "auth_time": payload.get("auth_time"),
            "acr": str(payload.get("acr") or ""),
            "id_token": id_token,
        }
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
        _set_roles(account, roles)

    def _refuse_account(self, account: ExternalAccount, refusal: str) -> None:
        _refuse_account(account, refusal)


def _set_roles(account: ExternalAccount, roles: set[str]) -> None:
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


def _refuse_account(account: ExternalAccount, refusal: str, *, when: str = "single sign-on refused") -> None:
    """Deprovision: no roles, deactivated, API tokens revoked (not suspended) and sessions ended, all
    on the record with the provider's reason."""
    user = account.user
    reason = f"{when}: {refusal}"
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
    account.refresh_token_encrypted = ""
    account.save(update_fields=["roles", "refused_at", "refresh_token_encrypted"])
    audit.record(
        "user.deactivated",
        actor=audit.Actor.system("sso"),
        target=user,
        before=before,
        after={"is_active": user.is_active, "roles": []},
        reason=reason,
    )
    withdraw_access(user=user, actor=audit.Actor.system("sso"), reason=reason)


# --- re-validation ------------------------------------------------------------------------------------
# A refresh token granted with ``offline_access`` outlives the browser session at the provider, so
# its refusal means the grant itself is gone (the person disabled, deleted, or their consent
# withdrawn): the person is deprovisioned. A session-bound refresh token dies with a plain sign-out
# at the provider too, so its refusal only ends the sessions here.


def _encrypt_refresh_token(token_info: dict) -> str:
    token = token_info.get("refresh_token")
    if not isinstance(token, str) or not token:
        return ""
    offline = "offline_access" in str(token_info.get("scope", "")).split()
    blob = json.dumps({"token": token, "offline": offline}).encode()
    return encrypt_private_key(blob).decode()


def store_refresh_token(account: ExternalAccount, token: str, *, offline: bool = True) -> None:
    """Keep the person's refresh token, encrypted at rest ("" forgets it)."""
    account.refresh_token_encrypted = _encrypt_refresh_token(
        {"refresh_token": token, "scope": "offline_access" if offline else ""}
    )
    account.save(update_fields=["refresh_token_encrypted"])


def _refresh_token_of(account: ExternalAccount) -> tuple[str, bool]:
    if not account.refresh_token_encrypted:
        return "", False
    stored = json.loads(decrypt_private_key(account.refresh_token_encrypted.encode()))
    return stored["token"], bool(stored["offline"])


def refresh_claims(account: ExternalAccount) -> dict | None:
    """Ask the provider about the person again: a refresh-token grant, then userinfo with the new
    access token. None when the provider refuses (``invalid_grant``: the grant is gone); raises
    ``ProviderUnavailable`` when it cannot be asked."""
    token, offline = _refresh_token_of(account)
    if not token:
        return None
    try:
        config = provider_config()
        answer = requests.post(
            config["token_endpoint"],
            data={
                "grant_type": "refresh_token",
                "refresh_token": token,
                "client_id": settings.OIDC_RP_CLIENT_ID,
                "client_secret": settings.OIDC_RP_CLIENT_SECRET,
            },
            timeout=settings.OIDC_TIMEOUT,
        )
        if answer.status_code in (400, 401) and _oauth_error(answer) in ("invalid_grant", "unauthorized_client"):
            return None
        answer.raise_for_status()
        tokens = answer.json()
        if tokens.get("refresh_token"):
            account.refresh_token_encrypted = _encrypt_refresh_token(
                {"refresh_token": tokens["refresh_token"], "scope": "offline_access" if offline else ""}
            )
            account.save(update_fields=["refresh_token_encrypted"])
        userinfo = requests.get(
            config["userinfo_endpoint"],
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
            timeout=settings.OIDC_TIMEOUT,
        )
        if userinfo.status_code == 401:
            return None
        userinfo.raise_for_status()
        claims = userinfo.json()
    except (requests.RequestException, OSError, ValueError, KeyError, ImproperlyConfigured) as exc:
        raise ProviderUnavailable(str(exc)) from None
    if not isinstance(claims, dict) or claims.get("sub") != account.subject:
        raise ProviderUnavailable("userinfo is about someone else")
    return claims


def _oauth_error(response) -> str:
    try:
        return str(response.json().get("error", ""))
    except ValueError:
        return ""


def revalidate(account: ExternalAccount) -> bool:
    """Re-check one person with the provider now. True when they may go on; otherwise their sessions
    are ended — and, when the provider has withdrawn an offline grant or no longer maps them to a
    role, they are deprovisioned. Raises ``ProviderUnavailable`` when the provider cannot be asked."""
    _, offline = _refresh_token_of(account)
    claims = refresh_claims(account)
    with transaction.atomic():
        account = ExternalAccount.objects.select_for_update().select_related("user").get(pk=account.pk)
        if claims is None:
            if offline:
                _refuse_account(account, "the provider no longer accepts this person", when="re-validation")
            else:
                account.refresh_token_encrypted = ""
                account.save(update_fields=["refresh_token_encrypted"])
                end_sessions(
                    user=account.user,
                    actor=audit.Actor.system("sso"),
                    reason="re-validation: the provider ended this person's session",
                )
            return False
        roles = roles_from_claims(claims)
        refusal = refusal_of(claims, roles)
        if refusal:
            _refuse_account(account, refusal, when="re-validation")
            return False
        _set_roles(account, roles)
        account.validated_at = timezone.now()
        account.save(update_fields=["roles", "validated_at"])
    return True


def revalidate_due_accounts() -> dict[str, int]:
    """The scheduled re-validation: every active person signed in through SSO whose refresh token
    has not been used for a whole window. Returns what happened, for the job's log."""
    window = settings.MANDATE_OIDC_REVALIDATE_SECONDS
    due = (
        ExternalAccount.objects.filter(issuer=settings.MANDATE_OIDC_ISSUER, user__is_active=True)
        .exclude(refresh_token_encrypted="")
        .filter(Q(validated_at__isnull=True) | Q(validated_at__lt=timezone.now() - timezone.timedelta(seconds=window)))
        .select_related("user")
    )
    outcome = {"checked": 0, "refused": 0, "unavailable": 0}
    for account in due:
        try:
            accepted = revalidate(account)
        except ProviderUnavailable as exc:
            logger.warning("could not re-validate %s with the OpenID provider: %s", account.user.get_username(), exc)
            outcome["unavailable"] += 1
            continue
        outcome["checked"] += 1
        outcome["refused"] += 0 if accepted else 1
    return outcome


def revalidated_or_signed_out(request):
    """For console.middleware.SsoSessionMiddleware: None when the session may go on (re-validated
    now if its window had passed), or the redirect to sign in again when it was ended."""
    state = request.session.get(SESSION_KEY)
    if not state or not request.user.is_authenticated:
        return None
    window = settings.MANDATE_OIDC_REVALIDATE_SECONDS
    if time.time() - float(state.get("validated_at", 0)) <= window:
        return None
    return _revalidate_session(request, state, window)


def _revalidate_session(request, state: dict, window: int):
    account = ExternalAccount.objects.select_related("user").filter(pk=state.get("account")).first()
    fresh_after = timezone.now() - timezone.timedelta(seconds=window)
    if account is not None and account.validated_at is not None and account.validated_at > fresh_after:
        state["validated_at"] = account.validated_at.timestamp()  # re-checked by another session or the job
        request.session[SESSION_KEY] = state
        return None
    message = "Your single sign-on session has ended; sign in again."
    if account is not None and account.refresh_token_encrypted:
        try:
            if revalidate(account):
                state["validated_at"] = time.time()
                request.session[SESSION_KEY] = state
                return None
        except ProviderUnavailable as exc:
            logger.warning("could not re-validate a session with the OpenID provider: %s", exc)
            message = "Your single sign-on session could not be re-checked with the provider; sign in again."
    _sign_out(request)
    messages.info(request, message)
    return HttpResponseRedirect(f"{resolve_url(settings.LOGIN_URL)}?next={urllib.parse.quote(request.get_full_path())}")


def _sign_out(request) -> None:
    key = request.session.session_key
    auth.logout(request)
    forget_session(key)


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

    def get_extra_params(self, request):
        params = dict(super().get_extra_params(request))
        prompts = []
        if "offline_access" in settings.OIDC_RP_SCOPES.split():
            prompts.append("consent")  # OpenID Connect Core §11: offline access is asked for with consent
        if request.GET.get("step_up") and settings.MANDATE_STEP_UP_MAX_AGE:
            # Step-up: the provider must authenticate the person afresh (and at the configured level).
            params["max_age"] = str(settings.MANDATE_STEP_UP_MAX_AGE)
            prompts.append("login")
            if settings.MANDATE_STEP_UP_ACR:
                params["acr_values"] = settings.MANDATE_STEP_UP_ACR
        if prompts:
            params["prompt"] = " ".join(prompts)
        return params


class CallbackView(OIDCAuthenticationCallbackView):
    def login_failure(self):
        messages.error(self.request, "Single sign-on did not let you in. Ask an identity admin if you think it should.")
        return HttpResponseRedirect(resolve_url(settings.LOGIN_URL))

    def login_success(self):
        response = super().login_success()
        details = getattr(self.user, "mandate_sso", {})
        auth_time = details.get("auth_time")
        self.request.session[SESSION_KEY] = {"account": details.get("account"), "validated_at": time.time()}
        self.request.session[ID_TOKEN_KEY] = details.get("id_token", "")
        self.request.session[ACR_KEY] = details.get("acr", "")
        record_sign_in(
            self.request,
            method="sso",
            sid=details.get("sid", ""),
            auth_time=float(auth_time) if isinstance(auth_time, int | float) else None,
        )
        return response

    def get(self, request):
        if request.GET.get("error"):
            # The provider (or a page anyone could make) reports a failed sign-in. Drop the state it
            # names when this browser started that flow; never sign out whoever is signed in here —
            # a cross-site navigation must not be able to do that.
            state = request.GET.get("state")
            states = request.session.get("oidc_states", {})
            if state and state in states:
                del states[state]
                request.session["oidc_states"] = states
            if request.user.is_authenticated:
                return HttpResponseRedirect(resolve_url(settings.LOGIN_REDIRECT_URL))
            return self.login_failure()
        try:
            return super().get(request)
        except SuspiciousOperation as exc:  # a stale or forged state, a bad ID token: refuse, never a 500
            logger.warning("single sign-on callback refused: %s", exc)
            return self.login_failure()
        except (requests.RequestException, OSError, ValueError, KeyError, ImproperlyConfigured) as exc:
            # The provider refused the code, or could not be reached.
            logger.warning("single sign-on callback failed: %s", exc)
            return self.login_failure()


def provider_logout_url(request, *, id_token: str) -> str | None:
    """Where to send the browser so the provider's session ends too (RP-initiated logout), or None
    when the provider advertises no ``end_session_endpoint``."""
    try:
        endpoint = provider_config().get("end_session_endpoint")
    except (OSError, ValueError, ImproperlyConfigured) as exc:
        logger.warning("OpenID provider unreachable at sign-out: %s", exc)
        return None
    if not endpoint:
        return None
    params = {
        "client_id": settings.OIDC_RP_CLIENT_ID,
        "post_logout_redirect_uri": request.build_absolute_uri(resolve_url(settings.LOGIN_URL)),
    }
    if id_token:
        params["id_token_hint"] = id_token
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{urllib.parse.urlencode(params)}"


def verify_logout_token(token: str) -> dict:
    """OpenID Connect Back-Channel Logout 1.0 §2.6: signed by the provider, for us, recent, with the
    logout event, a ``sub`` or ``sid``, no ``nonce``, and never seen before."""
    backend = MandateOIDCBackend()
    config = provider_config()
    backend.OIDC_OP_JWKS_ENDPOINT = config["jwks_uri"]
    try:
        key = backend.retrieve_matching_jwk(token)
        claims = jwt.decode(
            token,
            key,
            algorithms=[settings.OIDC_RP_SIGN_ALGO],
            audience=settings.OIDC_RP_CLIENT_ID,
            issuer=settings.MANDATE_OIDC_ISSUER,
            options={"require": ["iat", "jti"]},
            leeway=60,
        )
    except (jwt.PyJWTError, KeyError) as exc:
        raise SuspiciousOperation(f"logout token refused: {exc}") from None
    events = claims.get("events")
    if not isinstance(events, dict) or BACKCHANNEL_LOGOUT_EVENT not in events:
        raise SuspiciousOperation("logout token without the back-channel logout event")
    if "nonce" in claims:
        raise SuspiciousOperation("logout token carries a nonce")
    if not (claims.get("sub") or claims.get("sid")):
        raise SuspiciousOperation("logout token names neither sub nor sid")
    if time.time() - float(claims["iat"]) > 600:
        raise SuspiciousOperation("logout token too old")
    if not cache.add(f"mandate:sso:logout-jti:{claims['jti']}", 1, timeout=900):
        raise SuspiciousOperation("logout token replayed")
    return claims


@csrf_exempt  # the provider posts here server to server; the signed logout token is the proof
@require_POST
@never_cache
def backchannel_logout(request):
    try:
        claims = verify_logout_token(request.POST.get("logout_token", ""))
    except SuspiciousOperation as exc:
        logger.warning("back-channel logout refused: %s", exc)
        return JsonResponse({"error": "invalid_request", "error_description": str(exc)}, status=400)
    except (requests.RequestException, OSError, ValueError, ImproperlyConfigured) as exc:
        logger.warning("back-channel logout: the provider's keys could not be read: %s", exc)
        return JsonResponse({"error": "temporarily_unavailable"}, status=503)
    accounts = ExternalAccount.objects.filter(issuer=settings.MANDATE_OIDC_ISSUER).select_related("user")
    sid = str(claims.get("sid") or "")
    if claims.get("sub"):
        accounts = accounts.filter(subject=claims["sub"])
    else:
        accounts = accounts.filter(user__in=SignInSession.objects.filter(sid=sid).values("user"))
    for account in accounts:
        end_sessions(
            user=account.user,
            actor=audit.Actor.system("sso"),
            reason="the OpenID provider's back-channel logout",
            sid=sid or None,
        )
    return HttpResponse(status=200)


def context(request):
    return {"mandate_sso_enabled": True, "mandate_sso_label": settings.MANDATE_OIDC_BUTTON_LABEL}


urlpatterns = [
    path("authenticate/", SignInView.as_view(), name="oidc_authentication_init"),
    path("callback/", CallbackView.as_view(), name=CALLBACK_URL_NAME),
    path("backchannel-logout/", backchannel_logout, name="oidc_backchannel_logout"),
]
