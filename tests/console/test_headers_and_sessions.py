"""Response headers (Content-Security-Policy, Permissions-Policy), console session lifetimes (idle
and absolute), the admin site off by default and the interactive API docs behind sign-in."""

from __future__ import annotations

import importlib
import re
import time

import pytest
from django.test import Client
from django.urls import clear_url_caches

from accounts.models import SignInSession
from accounts.sessions import SESSION_SEEN_KEY, SESSION_STARTED_KEY

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


def _directives(header: str) -> dict[str, list[str]]:
    out = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


# --- headers --------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/login/", "/api/schema/", "/healthz"])
def test_every_answer_carries_a_strict_content_security_policy(client, url):
    response = client.get(url)
    policy = _directives(response["Content-Security-Policy"])
    assert policy["default-src"] == ["'self'"]
    for directive in ("script-src", "style-src"):
        assert "'unsafe-inline'" not in policy[directive] and "'unsafe-eval'" not in policy[directive]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"]


def test_the_console_pages_carry_the_policy_and_no_inline_script_or_style(signed_in, admin):
    page = signed_in(admin).get("/")
    assert "'unsafe-inline'" not in page["Content-Security-Policy"]
    html = page.content.decode()
    assert " style=" not in html
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "an inline <script> would be refused by the policy"
    assert "<style" not in html


def test_every_answer_carries_a_permissions_policy(client):
    header = client.get("/login/")["Permissions-Policy"]
    for feature in ("camera", "microphone", "geolocation", "payment", "usb"):
        assert f"{feature}=()" in header


def test_swagger_ui_is_served_without_inline_script(signed_in, admin):
    response = signed_in(admin).get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert "<style" not in html
    assert "'unsafe-inline'" not in response["Content-Security-Policy"]
    script = signed_in(admin).get("/api/docs/?script=")
    assert script.status_code == 200 and "SwaggerUIBundle" in script.content.decode()


def test_redoc_alone_gets_the_inline_styles_it_needs(signed_in, admin):
    response = signed_in(admin).get("/api/redoc/")
    assert response.status_code == 200
    policy = _directives(response["Content-Security-Policy"])
    assert "'unsafe-inline'" in policy["style-src"]
    assert "'unsafe-inline'" not in policy["script-src"]
    assert "fonts.googleapis.com" not in response.content.decode()


# --- the interactive docs and the admin site -------------------------------------------------------


@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_the_interactive_docs_ask_strangers_to_sign_in(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_the_interactive_docs_are_public_when_the_setting_says_so(client, settings, url):
    settings.MANDATE_API_DOCS_PUBLIC = True
    assert client.get(url).status_code == 200


def test_the_schema_itself_stays_fetchable_without_signing_in(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.")


def test_the_admin_site_is_off_by_default(client, admin):
    assert client.get("/admin/login/").status_code == 404
    assert client.post("/admin/login/", {"username": "ada", "password": PASSWORD}).status_code == 404


@pytest.fixture
def admin_site_enabled(settings):
    import console.urls

    settings.MANDATE_ADMIN_ENABLED = True
    importlib.reload(console.urls)
    clear_url_caches()
    yield
    settings.MANDATE_ADMIN_ENABLED = False
    importlib.reload(console.urls)
    clear_url_caches()


def test_the_admin_site_is_there_when_enabled(client, admin_site_enabled):
    assert client.get("/admin/login/").status_code == 200


# --- session lifetimes ----------------------------------------------------------------------------


def _sign_in(user) -> Client:
    client = Client()
    response = client.post("/login/", {"username": user.get_username(), "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/").status_code == 200
    return client


def _travel(client: Client, *, started_ago: float | None = None, seen_ago: float | None = None) -> None:
    """Moves the session's clock marks back in time, as if that long had passed."""
    session = client.session
    now = time.time()
    if started_ago is not None:
        session[SESSION_STARTED_KEY] = now - started_ago
    if seen_ago is not None:
        session[SESSION_SEEN_KEY] = now - seen_ago
    session.save()


def test_a_session_idle_for_longer_than_the_idle_timeout_is_signed_out(admin):
    client = _sign_in(admin)
    _travel(client, seen_ago=31 * 60)
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert "_auth_user_id" not in client.session
    assert not SignInSession.objects.filter(user=admin).exists()
    assert "without activity" in client.get(response["Location"]).content.decode()


def test_activity_keeps_a_session_alive_within_the_idle_timeout(admin):
    client = _sign_in(admin)
    _travel(client, seen_ago=29 * 60)
    assert client.get("/").status_code == 200
    assert time.time() - client.session[SESSION_SEEN_KEY] < 5  # the request counted as activity
    _travel(client, started_ago=11 * 3600, seen_ago=29 * 60)
    assert client.get("/").status_code == 200


def test_a_session_older_than_the_absolute_lifetime_ends_even_when_busy(admin):
    client = _sign_in(admin)
    _travel(client, started_ago=12 * 3600 + 1, seen_ago=1)
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert "_auth_user_id" not in client.session


def test_the_timeouts_follow_their_settings(admin, settings):
    settings.MANDATE_SESSION_IDLE_SECONDS = 120
    settings.MANDATE_SESSION_MAX_SECONDS = 600
    client = _sign_in(admin)
    _travel(client, seen_ago=121)
    assert client.get("/").status_code == 302

    client = _sign_in(admin)
    _travel(client, started_ago=601, seen_ago=1)
    assert client.get("/").status_code == 302


def test_a_stored_session_expires_no_later_than_the_idle_timeout(admin):
    from django.contrib.sessions.models import Session

    client = _sign_in(admin)
    stored = Session.objects.get(session_key=client.session.session_key)
    remaining = stored.expire_date.timestamp() - time.time()
    assert 0 < remaining <= 30 * 60 + 5


def test_signing_in_again_starts_a_new_absolute_lifetime(admin):
    client = _sign_in(admin)
    _travel(client, started_ago=12 * 3600 + 1)
    assert client.get("/").status_code == 302
    client.post("/login/", {"username": "ada", "password": PASSWORD})
    assert client.get("/").status_code == 200
    assert time.time() - client.session[SESSION_STARTED_KEY] < 5


def test_api_tokens_are_not_touched_by_session_lifetimes(api_client, admin):
    client = api_client.as_user(admin)
    response = client.get("/api/v1/agents/")
    assert response.status_code == 200
    assert "sessionid" not in response.cookies
