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
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from accounts.roles import AGENT_OWNER, IDENTITY_ADMIN
from audit.models import AuditEvent
from identities.models_oidc import ExternalAccount
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
