"""With the database unreachable every endpoint family answers a 503 in its own shape, with Retry-After."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from django.db import OperationalError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def database_down(monkeypatch):
    """Every new cursor fails the way psycopg and sqlite fail when the server or file is gone."""

    def refuse(self, *args, **kwargs):
        raise OperationalError('connection to server at "127.0.0.1", port 1 failed: Connection refused')

    def take_down():
        monkeypatch.setattr(BaseDatabaseWrapper, "_cursor", refuse)

    return take_down


def _client():
    return Client(raise_request_exception=False)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/v1/agents/", None),
        ("get", "/api/v1/envelopes/", None),
        ("post", "/api/v1/decisions", {"token": "x.y.z", "scope": "a:b", "resource": "r"}),
        ("get", "/api/v1/events/", None),
        ("get", "/.well-known/jwks.json", None),
        ("get", "/.well-known/spiffe-bundle", None),
    ],
)
def test_api_decision_and_well_known_endpoints_answer_json_503(database_down, api_client, admin, method, path, body):
    client = api_client.as_user(admin)
    database_down()
    response = getattr(client, method)(path, body, format="json") if body else getattr(client, method)(path)
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "temporarily_unavailable"
    assert response["Retry-After"] == "5"


@pytest.mark.parametrize("path", ["/oauth/introspect", "/oauth/revoke", "/oauth/token"])
def test_oauth_endpoints_answer_temporarily_unavailable(database_down, path, gateway, owner, admin):
    from accounts.models import ApiToken
    from tests.helpers.factories import make_agent, make_envelope, make_instance
    from tests.helpers.oauth import approve, token_form

    instance = make_instance(make_agent(owner))
    mint_form = token_form(instance, approve(make_envelope(instance), admin))

    secret = ApiToken.new_secret()
    ApiToken.objects.create(user=gateway, name="t", prefix=secret[:8], digest=ApiToken.digest_of(secret))
    database_down()
    form = {"token": "x.y.z"} if path != "/oauth/token" else mint_form
    response = _client().post(
        path, urlencode(form), content_type="application/x-www-form-urlencoded", HTTP_AUTHORIZATION=f"Bearer {secret}"
    )
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert response["Retry-After"]


def test_console_pages_answer_a_plain_503_page(database_down, client, admin):
    client.force_login(admin)
    database_down()
    client.raise_request_exception = False
    response = client.get("/")
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert b"Temporarily unavailable" in response.content
    assert response["Retry-After"] == "5"


def test_readyz_is_503_and_healthz_200(database_down):
    database_down()
    assert _client().get("/readyz").status_code == 503
    assert _client().get("/healthz").status_code == 200


def test_an_outage_outside_a_view_is_a_503_and_a_bug_still_a_500(rf):
    """Django's 500 handler sees what middleware raised (a session saved on the way out, say)."""
    from console.outage import server_error_or_outage

    try:
        raise OperationalError("server closed the connection unexpectedly")
    except OperationalError:
        outage = server_error_or_outage(rf.get("/api/v1/agents/"))
    try:
        raise RuntimeError("a bug, not an outage")
    except RuntimeError:
        bug = server_error_or_outage(rf.get("/api/v1/agents/"))
    assert (outage.status_code, bug.status_code) == (503, 500)
    assert json.loads(outage.content)["code"] == "temporarily_unavailable"
