"""Single sign-on's trust boundaries: sign-in codes are redeemed only by the callback of the browser
that started the flow, the callback's error path signs nobody out, ID tokens need ``exp`` and our
``azp``, deprovisioning revokes rather than suspends, and sessions are re-validated on a cadence.
The provider is never reached here (nothing listens on its address); the browser suite drives the
same rules against a real provider (tests/e2e/test_sso_browser.py)."""

from __future__ import annotations

import time
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.exceptions import SuspiciousOperation
from django.utils import timezone

from accounts.models import ApiToken, ExternalAccount, SignInSession
from accounts.roles import AGENT_OWNER, AUDITOR, IDENTITY_ADMIN
from accounts.services import create_api_token
from audit.models import AuditEvent
from tests.helpers.oidc import enable_sso

pytestmark = pytest.mark.django_db

ISSUER = "http://127.0.0.1:9"
ROLE_MAP = {IDENTITY_ADMIN: {"idp-admins"}, AGENT_OWNER: {"idp-owners"}, AUDITOR: {"idp-audit"}}


@pytest.fixture
def sso(settings):
    enable_sso(settings, issuer=ISSUER, client_id="mandate", client_secret="s3cret", role_map=ROLE_MAP)
    settings.ADMIN_ENABLED = True
    return settings


@pytest.fixture
def exchanges(monkeypatch):
    """Every code exchange the OpenID backend would send to the provider's token endpoint."""
    from console import sso as sso_module

    sent = []
    monkeypatch.setattr(
        sso_module,
        "provider_config",
        lambda: {
            "issuer": ISSUER,
            "token_endpoint": f"{ISSUER}/token",
            "userinfo_endpoint": f"{ISSUER}/me",
            "jwks_uri": f"{ISSUER}/jwks",
            "authorization_endpoint": f"{ISSUER}/auth",
        },
    )

    def record(self, payload):
        sent.append(dict(payload))
        raise AssertionError("a sign-in code was sent to the provider")

    monkeypatch.setattr(sso_module.MandateOIDCBackend, "get_token", record)
    return sent


# --- 1. the password form never redeems a sign-in code ---------------------------------------------


@pytest.mark.parametrize("url", ["/login/", "/admin/login/"])
def test_a_password_form_post_carrying_a_code_redeems_nothing_and_answers_the_form(sso, client, exchanges, url):
    response = client.post(f"{url}?code=stolen-code&state=anything", {"username": "ada", "password": "whatever"})
    assert exchanges == []
    assert response.status_code in (200, 404)  # the form again (or no admin site at all), never a 500
    assert "_auth_user_id" not in client.session


def test_the_backend_acts_only_for_the_callback_with_the_browsers_own_state(sso, rf, exchanges):
    from console.sso import MandateOIDCBackend

    request = rf.get("/login/", {"code": "c", "state": "s"})
    assert MandateOIDCBackend().authenticate(request, username="x", password="y") is None
    callback_without_verifier = rf.get("/oidc/callback/", {"code": "c", "state": "s"})
    assert MandateOIDCBackend().authenticate(callback_without_verifier) is None
    assert exchanges == []


def test_a_code_the_provider_refuses_at_the_callback_is_a_sign_in_error_not_a_500(sso, client, monkeypatch):
    import requests

    from console import sso as sso_module

    monkeypatch.setattr(
        sso_module,
        "provider_config",
        lambda: {"issuer": ISSUER, "token_endpoint": f"{ISSUER}/token", "userinfo_endpoint": "", "jwks_uri": ""},
    )

    def refuse(self, payload):
        response = requests.Response()
        response.status_code = 400
        response._content = b'{"error": "invalid_grant"}'
        response.raise_for_status()

    monkeypatch.setattr(sso_module.MandateOIDCBackend, "get_token", refuse)
    session = client.session
    session["oidc_states"] = {"s": {"nonce": "n", "code_verifier": "v" * 64, "added_on": time.time()}}
    session.save()
    response = client.get("/oidc/callback/", {"code": "c", "state": "s"})
    assert response.status_code == 302 and response.url.endswith("/login/")


# --- 3. the callback's error path leaves the session alone ------------------------------------------


def test_a_cross_site_error_callback_does_not_sign_the_person_out(sso, client, django_user_model):
    user = django_user_model.objects.create_user("ada", password="local-password-123")
    client.force_login(user)
    response = client.get("/oidc/callback/", {"error": "access_denied"})
    assert response.status_code == 302
    assert client.session.get("_auth_user_id") == str(user.pk)


def test_an_error_for_a_flow_this_browser_started_drops_that_state(sso, client):
    session = client.session
    session["oidc_states"] = {"mine": {"nonce": "n", "code_verifier": "v" * 64, "added_on": time.time()}}
    session.save()
    client.get("/oidc/callback/", {"error": "access_denied", "state": "mine"})
    assert "mine" not in client.session.get("oidc_states", {})


# --- 4. ID tokens need exp, and azp when present names us -------------------------------------------


@pytest.fixture
def backend(sso, rf):
    from console.sso import MandateOIDCBackend

    backend = MandateOIDCBackend()
    backend.request = rf.get("/oidc/callback/")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    backend.OIDC_RP_IDP_SIGN_KEY = key.public_key()
    backend.test_key = key
    return backend


def _id_token(key, **overrides):
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": "mandate", "sub": "u-1", "iat": now, "exp": now + 300, "nonce": "n-1", **overrides}
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm="RS256")


def test_an_id_token_without_exp_is_refused(backend):
    with pytest.raises(SuspiciousOperation):
        backend.verify_token(_id_token(backend.test_key, exp=None), nonce="n-1")


def test_a_single_audience_id_token_with_a_foreign_azp_is_refused(backend):
    with pytest.raises(SuspiciousOperation):
        backend.verify_token(_id_token(backend.test_key, azp="another-client"), nonce="n-1")


def test_an_id_token_whose_azp_names_us_verifies(backend):
    assert backend.verify_token(_id_token(backend.test_key, azp="mandate"), nonce="n-1")["sub"] == "u-1"


# --- 2. deprovisioning revokes API tokens and ends sessions -----------------------------------------


def _sso_person(django_user_model, *, refresh_token="rt-1", validated_ago=timedelta(hours=1)):
    from console.sso import store_refresh_token

    user = django_user_model.objects.create_user("olga")
    user.set_unusable_password()
    user.save()
    account = ExternalAccount.objects.create(user=user, issuer=ISSUER, subject="olga", roles=[AGENT_OWNER])
    store_refresh_token(account, refresh_token)
    ExternalAccount.objects.filter(pk=account.pk).update(validated_at=timezone.now() - validated_ago)
    from django.contrib.auth.models import Group

    user.groups.add(Group.objects.get_or_create(name=AGENT_OWNER)[0])
    account.refresh_from_db()
    return user, account


def test_a_person_the_provider_no_longer_accepts_loses_tokens_and_sessions_at_the_next_revalidation(
    sso, client, django_user_model, monkeypatch
):
    from console import sso as sso_module

    user, _ = _sso_person(django_user_model)
    issued = create_api_token(user=user, actor=user, name="automation")
    client.force_login(user)
    SignInSession.objects.create(user=user, session_key=client.session.session_key, method="sso")
    monkeypatch.setattr(sso_module, "refresh_claims", lambda account: None)  # the provider says invalid_grant

    assert sso_module.revalidate_due_accounts() == {"checked": 1, "refused": 1, "unavailable": 0}

    user.refresh_from_db()
    token = ApiToken.objects.get(pk=issued.token.pk)
    assert not user.is_active
    assert token.revoked_at is not None  # revoked, not suspended: it never works again
    assert not SignInSession.objects.filter(user=user).exists()
    assert client.get("/").status_code == 302  # the open session is gone
    event = AuditEvent.objects.filter(verb="user.deactivated", target_id=str(user.pk)).get()
    assert "provider" in event.reason
    assert AuditEvent.objects.filter(verb="token.revoked").count() == 1


def test_a_person_still_accepted_is_revalidated_and_keeps_working(sso, django_user_model, monkeypatch):
    from console import sso as sso_module

    user, account = _sso_person(django_user_model)
    monkeypatch.setattr(
        sso_module, "refresh_claims", lambda account: {"sub": "olga", "groups": ["idp-owners"], "email_verified": True}
    )
    assert sso_module.revalidate_due_accounts() == {"checked": 1, "refused": 0, "unavailable": 0}
    account.refresh_from_db()
    assert account.validated_at > timezone.now() - timedelta(minutes=1)
    user.refresh_from_db()
    assert user.is_active


def test_a_person_removed_from_every_mapped_group_is_deprovisioned(sso, django_user_model, monkeypatch):
    from console import sso as sso_module

    user, _ = _sso_person(django_user_model)
    create_api_token(user=user, actor=user, name="automation")
    monkeypatch.setattr(sso_module, "refresh_claims", lambda account: {"sub": "olga", "groups": ["alumni"]})
    assert sso_module.revalidate_due_accounts() == {"checked": 1, "refused": 1, "unavailable": 0}
    assert not ApiToken.objects.filter(user=user, revoked_at__isnull=True).exists()


def test_the_refresh_token_is_encrypted_at_rest(sso, django_user_model):
    _, account = _sso_person(django_user_model, refresh_token="rt-secret-value")
    assert "rt-secret-value" not in account.refresh_token_encrypted


def test_an_sso_session_past_its_window_without_a_way_to_revalidate_is_ended(sso, client, django_user_model):
    user, account = _sso_person(django_user_model, refresh_token="")
    client.force_login(user, backend="console.sso.MandateOIDCBackend")
    session = client.session
    session["mandate_sso"] = {"validated_at": time.time() - 3600, "account": account.pk}
    session.save()
    response = client.get("/")
    assert response.status_code == 302 and "/login/" in response.url
    assert "_auth_user_id" not in client.session


# --- back-channel logout ----------------------------------------------------------------------------


@pytest.fixture
def provider_key(sso, monkeypatch):
    """The provider's signing key, served to the back-channel logout check as its JWKS would."""
    from console import sso as sso_module

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    monkeypatch.setattr(sso_module, "provider_config", lambda: {"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks"})
    monkeypatch.setattr(
        sso_module.MandateOIDCBackend,
        "retrieve_matching_jwk",
        lambda self, token: jwt.PyJWK(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "RS256"),
    )
    return key


def _logout_token(key, **overrides):
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": "mandate",
        "iat": now,
        "exp": now + 120,
        "jti": f"j-{now}-{overrides.get('sub', 'olga')}-{time.monotonic_ns()}",
        "sub": "olga",
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        **overrides,
    }
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm="RS256")


def _open_sso_session(client, user, sid="provider-session-1"):
    client.force_login(user, backend="console.sso.MandateOIDCBackend")
    SignInSession.objects.create(user=user, session_key=client.session.session_key, method="sso", sid=sid)


def test_a_back_channel_logout_ends_the_persons_sessions_at_once(sso, provider_key, client, django_user_model):
    user, _ = _sso_person(django_user_model)
    _open_sso_session(client, user)
    response = client.post("/oidc/backchannel-logout/", {"logout_token": _logout_token(provider_key)})
    assert response.status_code == 200 and response["Cache-Control"].startswith("max-age=0")
    assert client.get("/").status_code == 302
    assert not SignInSession.objects.filter(user=user).exists()
    assert AuditEvent.objects.filter(verb="user.sessions_ended", reason__contains="back-channel").exists()


def test_a_back_channel_logout_naming_only_a_sid_ends_that_session(sso, provider_key, client, django_user_model):
    user, _ = _sso_person(django_user_model)
    _open_sso_session(client, user, sid="sid-a")
    token = _logout_token(provider_key, sub=None, sid="sid-a")
    assert client.post("/oidc/backchannel-logout/", {"logout_token": token}).status_code == 200
    assert not SignInSession.objects.filter(sid="sid-a").exists()


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "another-client"},
        {"iss": "https://evil.example"},
        {"events": {"something-else": {}}},
        {"nonce": "n"},
        {"sub": None, "sid": None},
        {"jti": None},
    ],
)
def test_a_bad_logout_token_is_refused_and_ends_nothing(sso, provider_key, client, django_user_model, overrides):
    user, _ = _sso_person(django_user_model)
    _open_sso_session(client, user)
    response = client.post("/oidc/backchannel-logout/", {"logout_token": _logout_token(provider_key, **overrides)})
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    assert SignInSession.objects.filter(user=user).exists()


def test_a_logout_token_signed_by_someone_else_is_refused(sso, provider_key, client):
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    response = client.post("/oidc/backchannel-logout/", {"logout_token": _logout_token(forger)})
    assert response.status_code == 400


def test_a_replayed_logout_token_is_refused(sso, provider_key, client, django_user_model):
    _sso_person(django_user_model)
    token = _logout_token(provider_key)
    assert client.post("/oidc/backchannel-logout/", {"logout_token": token}).status_code == 200
    assert client.post("/oidc/backchannel-logout/", {"logout_token": token}).status_code == 400


# --- RP-initiated logout ----------------------------------------------------------------------------


def test_signing_out_of_an_sso_session_ends_the_provider_session_too(sso, client, django_user_model, monkeypatch):
    from console import sso as sso_module

    monkeypatch.setattr(
        sso_module, "provider_config", lambda: {"issuer": ISSUER, "end_session_endpoint": f"{ISSUER}/session/end"}
    )
    user, account = _sso_person(django_user_model)
    _open_sso_session(client, user)
    session = client.session
    session["mandate_sso"] = {"account": account.pk, "validated_at": time.time()}
    session["mandate_sso_id_token"] = "the-id-token"
    session.save()
    response = client.post("/logout/")
    assert response.status_code == 302
    assert response.url.startswith(f"{ISSUER}/session/end?")
    assert "id_token_hint=the-id-token" in response.url and "client_id=mandate" in response.url
    assert "post_logout_redirect_uri=http%3A%2F%2Ftestserver%2Flogin%2F" in response.url
    assert "_auth_user_id" not in client.session
    assert not SignInSession.objects.filter(user=user).exists()


def test_signing_out_of_a_password_session_stays_here(sso, client, django_user_model):
    user = django_user_model.objects.create_user("local", password="local-password-123")
    client.post("/login/", {"username": "local", "password": "local-password-123"})
    assert SignInSession.objects.filter(user=user, method="password").count() == 1
    response = client.post("/logout/")
    assert response.status_code == 302 and response.url.startswith("/login")
    assert not SignInSession.objects.exists()


# --- SSO-only mode ----------------------------------------------------------------------------------


def test_sso_only_mode_lets_only_break_glass_accounts_use_a_password(sso, client, django_user_model):
    sso.MANDATE_OIDC_ONLY = True
    sso.MANDATE_BREAK_GLASS_USERS = ["breakglass"]
    django_user_model.objects.create_user("local", password="local-password-123")
    django_user_model.objects.create_user("breakglass", password="local-password-123")
    client.post("/login/", {"username": "local", "password": "local-password-123"})
    assert "_auth_user_id" not in client.session
    client.post("/login/", {"username": "breakglass", "password": "local-password-123"})
    assert "_auth_user_id" in client.session
