"""People sign into the console through a real, independent OpenID provider, in a real browser.

The provider is the OpenID-certified ``oidc-provider`` package run with Node on 127.0.0.1
(tests/e2e/oidc_provider/provider.mjs); Mandate runs in pytest-django's live server; Chromium (the
``browser`` fixture of tests/e2e/conftest.py) drives the whole authorization code flow (PKCE,
state, nonce) by clicking, as a person would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client
from django.utils import timezone

from accounts.models import ApiToken, ExternalAccount, SignInSession
from accounts.roles import AGENT_OWNER, IDENTITY_ADMIN
from accounts.services import create_api_token
from audit.models import AuditEvent
from tests.helpers.oidc import enable_sso

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PROVIDER_DIR = Path(__file__).parent / "oidc_provider"
CLIENT_ID = "mandate-console"
CLIENT_SECRET = "a-client-secret-for-the-test-provider-only"

ACCOUNTS = {
    "ada": {
        "password": "ada-pw",
        "claims": {
            "email": "ada@corp.test",
            "email_verified": True,
            "preferred_username": "ada",
            "groups": ["idp-identity-admins", "staff"],
        },
    },
    "olga": {
        "password": "olga-pw",
        "claims": {
            "email": "olga@corp.test",
            "email_verified": True,
            "preferred_username": "olga",
            "groups": ["idp-agent-owners"],
        },
    },
    "mallory": {
        "password": "mallory-pw",
        "claims": {
            "email": "mallory@corp.test",
            "email_verified": True,
            "preferred_username": "mallory",
            "groups": ["contractors"],
        },
    },
    "dave": {
        "password": "dave-pw",
        "disabled": True,
        "claims": {"preferred_username": "dave", "groups": ["idp-identity-admins"]},
    },
}


@pytest.fixture(scope="module")
def node_provider_ready():
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None:
        pytest.skip("node is not installed: the SSO browser test needs it to run the OpenID provider")
    if not (PROVIDER_DIR / "node_modules" / "oidc-provider").exists():
        subprocess.run([npm or "npm", "ci", "--no-audit", "--no-fund"], cwd=PROVIDER_DIR, check=True, timeout=300)
    return node


@pytest.fixture
def accounts_file(tmp_path):
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps(ACCOUNTS))
    return path


@pytest.fixture
def provider(node_provider_ready, live_server, accounts_file):
    env = {
        **os.environ,
        "PORT": "0",
        "CLIENT_ID": CLIENT_ID,
        "CLIENT_SECRET": CLIENT_SECRET,
        "REDIRECT_URI": f"{live_server.url}/oidc/callback/",
        "POST_LOGOUT_REDIRECT_URI": f"{live_server.url}/login/",
        "BACKCHANNEL_LOGOUT_URI": f"{live_server.url}/oidc/backchannel-logout/",
        "ACCOUNTS_FILE": str(accounts_file),
    }
    process = subprocess.Popen(
        [node_provider_ready, "provider.mjs"],
        cwd=PROVIDER_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = process.stdout.readline()
        if not line.startswith("READY "):
            pytest.fail(f"the OpenID provider did not start: {line!r}")
        yield line.split()[1]
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def sso(settings, provider):
    enable_sso(
        settings,
        issuer=provider,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        role_map={IDENTITY_ADMIN: {"idp-identity-admins"}, AGENT_OWNER: {"idp-agent-owners"}},
    )
    return provider


@pytest.fixture
def sso_sign_in(browser, live_server):
    """``sso_sign_in(username, password)``: start at the console's sign-in page, take the SSO
    button, sign in at the provider; the page is wherever Mandate sent the browser back to."""
    contexts = []

    def sign_in(username, password):
        context = browser.new_context()
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15000)
        page.authorization_requests = []
        page.on("request", lambda r: page.authorization_requests.append(r.url) if "/auth?" in r.url else None)
        page.goto(f"{live_server.url}/login/")
        page.click("#sso-sign-in")
        page.wait_for_selector("#idp-submit")
        assert page.url.startswith("http://127.0.0.1:") and "/interaction/" in page.url
        page.fill("#username", username)
        page.fill("#password", password)
        page.click("#idp-submit")
        page.wait_for_url(lambda url: url.startswith(live_server.url) and "/oidc/" not in url)
        return page

    yield sign_in
    for context in contexts:
        context.close()


def test_an_admin_signs_in_through_the_provider_and_lands_with_the_admin_role(sso, sso_sign_in):
    page = sso_sign_in("ada", "ada-pw")
    (authorization,) = page.authorization_requests
    for parameter in ("code_challenge=", "code_challenge_method=S256", "state=", "nonce=", "response_type=code"):
        assert parameter in authorization
    assert "/login/" not in page.url
    assert "ada" in page.content()
    user = get_user_model().objects.get(username="ada")
    assert user.is_active and not user.has_usable_password()
    assert set(user.groups.values_list("name", flat=True)) == {IDENTITY_ADMIN}
    account = ExternalAccount.objects.get(user=user)
    assert account.issuer == sso and account.subject == "ada" and account.roles == [IDENTITY_ADMIN]
    assert AuditEvent.objects.filter(verb="user.created", target_label="ada").exists()


def test_someone_the_role_map_does_not_cover_is_refused_and_no_account_is_made(sso, sso_sign_in):
    page = sso_sign_in("mallory", "mallory-pw")
    assert "/login/" in page.url
    assert "did not let you in" in page.content()
    assert not get_user_model().objects.filter(username="mallory").exists()


def test_someone_the_provider_disables_is_refused_here(sso, sso_sign_in):
    page = sso_sign_in("dave", "dave-pw")
    assert "/login/" in page.url
    assert not get_user_model().objects.filter(username="dave").exists()


def test_a_person_removed_from_their_group_at_the_provider_is_refused_and_deactivated_on_next_sign_in(
    sso, sso_sign_in, accounts_file
):
    sso_sign_in("olga", "olga-pw")
    olga = get_user_model().objects.get(username="olga")
    assert set(olga.groups.values_list("name", flat=True)) == {AGENT_OWNER}

    changed = json.loads(accounts_file.read_text())
    changed["olga"]["claims"]["groups"] = ["alumni"]
    accounts_file.write_text(json.dumps(changed))

    page = sso_sign_in("olga", "olga-pw")
    assert "/login/" in page.url
    olga.refresh_from_db()
    assert not olga.is_active
    assert not olga.groups.exists()
    assert AuditEvent.objects.filter(verb="user.deactivated", target_label="olga").exists()


# --- the trust boundaries of single sign-on --------------------------------------------------------


def _session_of(page) -> SessionStore:
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "sessionid"]
    return SessionStore(session_key=cookie["value"])


def _code_from_a_hand_made_authorization_request(issuer: str, redirect_uri: str, username: str, password: str):
    """What an attacker does: their own authorization request for our client (their own PKCE pair),
    signed in at the provider, the code taken from the redirect instead of following it."""
    import base64
    import hashlib
    import re
    import secrets
    import urllib.parse

    import requests

    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    browser = requests.Session()
    config = browser.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
    query = {
        "client_id": CLIENT_ID,
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "scope": "openid",
        "state": "attacker-state",
        "nonce": "attacker-nonce",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    login_page = browser.get(f"{config['authorization_endpoint']}?{urllib.parse.urlencode(query)}", timeout=10)
    action = re.search(r'action="([^"]+)"', login_page.text).group(1)
    response = browser.post(
        urllib.parse.urljoin(login_page.url, action),
        data={"username": username, "password": password},
        allow_redirects=False,
        timeout=10,
    )
    for _ in range(10):
        location = urllib.parse.urljoin(response.url, response.headers["Location"])
        if location.startswith(redirect_uri):
            return urllib.parse.urlsplit(location).query
        response = browser.get(location, allow_redirects=False, timeout=10)
    raise AssertionError("the provider never redirected to the callback")


def test_a_real_sign_in_code_posted_to_the_password_forms_signs_nobody_in(sso, live_server):
    """The attack: a code the provider issued, posted to /login/ (and /admin/login/) with any
    username and password. Refused as a plain failed sign-in: no exchange, nobody signed in, no 500."""
    for url in ("/login/", "/admin/login/"):
        query = _code_from_a_hand_made_authorization_request(sso, f"{live_server.url}/oidc/callback/", "ada", "ada-pw")
        assert "code=" in query
        attacker = Client()
        response = attacker.post(f"{url}?{query}", {"username": "mallory", "password": "anything"})
        assert response.status_code in (200, 404), url  # the form again, or no admin site at all
        assert "_auth_user_id" not in attacker.session
    assert not get_user_model().objects.filter(username="ada").exists()


def test_signing_out_ends_the_provider_session_so_the_next_sso_sign_in_asks_again(sso, sso_sign_in, live_server):
    page = sso_sign_in("ada", "ada-pw")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_selector("#idp-logout")  # the provider's own sign-out confirmation
    page.click("#idp-logout")
    page.wait_for_url(f"{live_server.url}/login/")
    page.click("#sso-sign-in")
    page.wait_for_selector("#idp-submit")  # asked for credentials again: the provider session is gone
    assert not SignInSession.objects.exists()


def test_a_logout_at_the_provider_ends_the_mandate_session_at_once(sso, sso_sign_in, live_server):
    page = sso_sign_in("ada", "ada-pw")
    assert SignInSession.objects.filter(user__username="ada", method="sso").exclude(sid="").count() == 1
    page.goto(f"{sso}/session/end")
    page.click("#idp-logout")
    page.wait_for_selector("#idp-signed-out")
    page.goto(f"{live_server.url}/")
    assert "/login/" in page.url
    assert not SignInSession.objects.filter(user__username="ada").exists()
    assert AuditEvent.objects.filter(verb="user.sessions_ended", reason__contains="back-channel").exists()


@pytest.fixture
def offline_sso(sso, settings):
    settings.OIDC_RP_SCOPES = "openid offline_access email profile groups"
    return sso


def _disable(accounts_file, username):
    accounts = json.loads(accounts_file.read_text())
    accounts[username]["disabled"] = True
    accounts_file.write_text(json.dumps(accounts))


def test_a_person_disabled_at_the_provider_loses_session_and_tokens_at_the_next_revalidation(
    offline_sso, sso_sign_in, accounts_file, live_server
):
    from accounts.models import ExternalAccount
    from console.sso import revalidate_due_accounts

    page = sso_sign_in("olga", "olga-pw")
    olga = get_user_model().objects.get(username="olga")
    issued = create_api_token(user=olga, actor=olga, name="automation")
    account = ExternalAccount.objects.get(user=olga)
    assert account.refresh_token_encrypted  # the provider granted offline access

    # Still accepted: the job re-validates and leaves everything as it was.
    ExternalAccount.objects.filter(pk=account.pk).update(validated_at=timezone.now() - timedelta(hours=1))
    assert revalidate_due_accounts() == {"checked": 1, "refused": 0, "unavailable": 0}

    _disable(accounts_file, "olga")
    ExternalAccount.objects.filter(pk=account.pk).update(validated_at=timezone.now() - timedelta(hours=1))
    assert revalidate_due_accounts() == {"checked": 1, "refused": 1, "unavailable": 0}
    olga.refresh_from_db()
    assert not olga.is_active
    assert ApiToken.objects.get(pk=issued.token.pk).revoked_at is not None
    page.goto(f"{live_server.url}/")
    assert "/login/" in page.url


def test_an_open_session_past_its_window_is_re_checked_with_the_provider_on_the_next_page(
    offline_sso, sso_sign_in, accounts_file, live_server
):
    page = sso_sign_in("olga", "olga-pw")
    session = _session_of(page)
    state = session["mandate_sso"]
    state["validated_at"] = time.time() - 3600
    session["mandate_sso"] = state
    session.save()
    from accounts.models import ExternalAccount

    ExternalAccount.objects.filter(user__username="olga").update(validated_at=timezone.now() - timedelta(hours=1))
    page.goto(f"{live_server.url}/")  # still accepted: re-checked quietly, the page is served
    assert "/login/" not in page.url

    _disable(accounts_file, "olga")
    session = _session_of(page)
    state = session["mandate_sso"]
    state["validated_at"] = time.time() - 3600
    session["mandate_sso"] = state
    session.save()
    ExternalAccount.objects.filter(user__username="olga").update(validated_at=timezone.now() - timedelta(hours=1))
    page.goto(f"{live_server.url}/")
    assert "/login/" in page.url
    assert not get_user_model().objects.get(username="olga").is_active
