"""Single sign-on rules, checked without a browser: what the provider's claims do to accounts and
roles, the ID-token checks the library leaves out, and that SSO stays out of the way when off.
(The full flow against a real OpenID provider is tests/e2e/test_sso_browser.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import SuspiciousOperation

from accounts.models import ExternalAccount
from accounts.roles import AGENT_OWNER, AUDITOR, IDENTITY_ADMIN
from audit.models import AuditEvent
from tests.helpers.oidc import enable_sso

pytestmark = pytest.mark.django_db

ISSUER = "http://127.0.0.1:9"  # nothing listens there: no test below may need the provider
ROLE_MAP = {IDENTITY_ADMIN: {"idp-admins"}, AGENT_OWNER: {"idp-owners"}, AUDITOR: {"idp-audit"}}


@pytest.fixture
def sso(settings):
    enable_sso(settings, issuer=ISSUER, client_id="mandate", client_secret="s3cret", role_map=ROLE_MAP)
    return settings


@pytest.fixture
def backend(sso, rf):
    from console.sso import MandateOIDCBackend

    backend = MandateOIDCBackend()
    backend.request = rf.get("/oidc/callback/")
    return backend


def sign_in(backend, monkeypatch, sub="u-1", **claims):
    """What the backend does after the code exchange, with the provider's userinfo answer given."""
    userinfo = {"sub": sub, "preferred_username": "pat", "email": "pat@corp.test", "email_verified": True, **claims}
    monkeypatch.setattr(backend, "get_userinfo", lambda *a: userinfo)
    return backend.get_or_create_user("access", "id-token", {"sub": sub, "iss": ISSUER, "aud": "mandate"})


def roles(user):
    return set(user.groups.values_list("name", flat=True))


# --- off by default ---------------------------------------------------------------------------------


def _run_settings(**env):
    code = (
        "import sys, django; django.setup(); import console.urls; "
        "print('mozilla_django_oidc' in sys.modules, 'console.sso' in sys.modules)"
    )
    environment = {**os.environ, "MANDATE_TESTING": "1", "DJANGO_SETTINGS_MODULE": "console.settings", **env}
    return subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=60)


def test_sso_is_off_by_default_and_nothing_about_it_loads(client):
    result = _run_settings()
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]
    assert client.get("/oidc/authenticate/").status_code == 404


def test_a_role_map_naming_an_unknown_role_stops_start_up():
    result = _run_settings(
        MANDATE_OIDC_ENABLED="1",
        MANDATE_OIDC_ISSUER=ISSUER,
        MANDATE_OIDC_CLIENT_ID="m",
        MANDATE_OIDC_CLIENT_SECRET="s",
        MANDATE_OIDC_ROLE_MAP="superuser=idp-admins",
    )
    assert result.returncode != 0 and "MANDATE_OIDC_ROLE_MAP" in result.stderr


def test_switched_on_by_environment_it_loads_with_a_secret_from_a_file(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    result = _run_settings(
        MANDATE_OIDC_ENABLED="1",
        MANDATE_OIDC_ISSUER=ISSUER,
        MANDATE_OIDC_CLIENT_ID="m",
        MANDATE_OIDC_CLIENT_SECRET_FILE=str(secret),
        MANDATE_OIDC_ROLE_MAP="identity-admin=idp-admins,agent-owner=idp-owners",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]


# --- accounts and roles -----------------------------------------------------------------------------


def test_first_sign_in_creates_the_user_with_the_mapped_roles(backend, monkeypatch):
    user = sign_in(backend, monkeypatch, groups=["idp-admins", "idp-audit", "unrelated"])
    assert user.username == "pat" and user.email == "pat@corp.test"
    assert not user.has_usable_password()
    assert roles(user) == {IDENTITY_ADMIN, AUDITOR}
    assert ExternalAccount.objects.get(user=user).subject == "u-1"
    assert AuditEvent.objects.filter(verb="user.created").count() == 1


def test_roles_follow_the_provider_at_every_sign_in(backend, monkeypatch):
    user = sign_in(backend, monkeypatch, groups=["idp-admins"])
    again = sign_in(backend, monkeypatch, groups=["idp-owners"])
    assert again == user
    assert roles(user) == {AGENT_OWNER}
    changed = AuditEvent.objects.filter(verb="user.roles_changed").order_by("seq").last()
    assert changed.before == {"roles": [IDENTITY_ADMIN]} and changed.after == {"roles": [AGENT_OWNER]}


def test_sso_never_takes_over_a_local_account_with_the_same_name_or_email(backend, monkeypatch, django_user_model):
    local = django_user_model.objects.create_user("pat", email="pat@corp.test", password="local-password-123")
    user = sign_in(backend, monkeypatch, groups=["idp-owners"])
    assert user != local and user.username == "pat-2"
    assert roles(local) == set()


def test_someone_with_no_mapped_role_is_refused_and_gets_no_account(backend, monkeypatch):
    assert sign_in(backend, monkeypatch, groups=["contractors"]) is None
    assert not get_user_model().objects.exists()


def test_a_refused_sign_in_deactivates_the_account_and_ends_its_sessions(backend, monkeypatch, client):
    user = sign_in(backend, monkeypatch, groups=["idp-admins"])
    client.force_login(user, backend="console.sso.MandateOIDCBackend")
    assert backend.get_user(user.pk) == user

    assert sign_in(backend, monkeypatch, groups=[]) is None
    user.refresh_from_db()
    assert not user.is_active and roles(user) == set()
    assert backend.get_user(user.pk) is None
    event = AuditEvent.objects.get(verb="user.deactivated")
    assert event.before["roles"] == [IDENTITY_ADMIN] and "no Mandate role" in event.reason


def test_the_account_comes_back_when_the_provider_lets_the_person_in_again(backend, monkeypatch):
    user = sign_in(backend, monkeypatch, groups=["idp-owners"])
    sign_in(backend, monkeypatch, groups=[])
    assert sign_in(backend, monkeypatch, groups=["idp-owners"]) == user
    user.refresh_from_db()
    assert user.is_active and roles(user) == {AGENT_OWNER}


def test_an_account_deactivated_here_stays_out_whatever_the_provider_says(backend, monkeypatch):
    user = sign_in(backend, monkeypatch, groups=["idp-owners"])
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    assert sign_in(backend, monkeypatch, groups=["idp-owners"]) is None


def test_allowed_groups_restrict_who_may_sign_in(backend, monkeypatch, settings):
    settings.MANDATE_OIDC_ALLOWED_GROUPS = ["mandate-users"]
    assert sign_in(backend, monkeypatch, groups=["idp-owners"]) is None
    assert sign_in(backend, monkeypatch, groups=["idp-owners", "mandate-users"]) is not None


def test_an_unverified_email_is_refused(backend, monkeypatch):
    assert sign_in(backend, monkeypatch, groups=["idp-owners"], email_verified=False) is None


def test_userinfo_about_someone_else_is_refused(backend, monkeypatch):
    monkeypatch.setattr(backend, "get_userinfo", lambda *a: {"sub": "someone-else", "groups": ["idp-admins"]})
    with pytest.raises(SuspiciousOperation):
        backend.get_or_create_user("a", "i", {"sub": "u-1"})


# --- ID token checks --------------------------------------------------------------------------------


@pytest.fixture
def idp_key(backend):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    backend.OIDC_RP_IDP_SIGN_KEY = key.public_key()
    return key


def id_token(key, **overrides):
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": "mandate", "sub": "u-1", "iat": now, "exp": now + 300, "nonce": "n-1", **overrides}
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm="RS256")


def test_a_good_id_token_verifies(backend, idp_key):
    assert backend.verify_token(id_token(idp_key), nonce="n-1")["sub"] == "u-1"


@pytest.mark.parametrize(
    "overrides",
    [
        {"iss": "https://evil.example"},
        {"aud": "another-client"},
        {"aud": ["mandate", "another-client"]},  # several audiences and no azp naming us
        {"nonce": "replayed"},
        {"exp": int(time.time()) - 3600},
        {"sub": None},
    ],
)
def test_a_bad_id_token_is_refused(backend, idp_key, overrides):
    with pytest.raises(SuspiciousOperation):
        backend.verify_token(id_token(idp_key, **overrides), nonce="n-1")


def test_an_id_token_signed_with_hmac_is_refused(backend, idp_key):
    forged = jwt.encode(
        {"iss": ISSUER, "aud": "mandate", "sub": "u-1", "nonce": "n-1"},
        "s3cret-s3cret-s3cret-s3cret-s3cret",
        algorithm="HS256",
    )
    with pytest.raises(SuspiciousOperation):
        backend.verify_token(forged, nonce="n-1")


# --- the views never fail with a 500 ---------------------------------------------------------------


def test_a_callback_with_an_unknown_state_goes_back_to_sign_in(sso, client):
    session = client.session
    session["oidc_states"] = {"real-state": {"nonce": "n", "code_verifier": "v" * 64, "added_on": time.time()}}
    session.save()
    response = client.get("/oidc/callback/", {"code": "c", "state": "forged"})
    assert response.status_code == 302 and response.url.endswith("/login/")


def test_a_provider_error_goes_back_to_sign_in(sso, client):
    response = client.get("/oidc/callback/", {"error": "access_denied", "state": "s"})
    assert response.status_code == 302 and response.url.endswith("/login/")


def test_an_unreachable_provider_sends_people_back_with_a_message_not_an_error(sso, client):
    response = client.get("/oidc/authenticate/")
    assert response.status_code == 302 and response.url.endswith("/login/")


def test_local_accounts_still_sign_in_with_a_password_while_the_provider_is_down(sso, rf, django_user_model):
    django_user_model.objects.create_user("local", password="local-password-123")
    Group.objects.get_or_create(name=AGENT_OWNER)
    from django.contrib.auth import authenticate

    # The sign-in lockout needs the request (its address is half the key), as the login form passes it.
    request = rf.post("/login/")
    assert authenticate(request, username="local", password="local-password-123").username == "local"


def test_the_sign_in_page_offers_sso_only_when_it_is_on(client, settings):
    assert "sso-sign-in" not in client.get("/login/").content.decode()
    enable_sso(settings, issuer=ISSUER, client_id="mandate", client_secret="s3cret", role_map=ROLE_MAP)
    page = client.get("/login/?next=/agents/").content.decode()
    assert 'id="sso-sign-in"' in page and "Sign in with SSO" in page
    assert "/oidc/authenticate/?next=/agents/" in page
