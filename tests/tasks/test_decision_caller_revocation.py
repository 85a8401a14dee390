"""A gateway's API token revoked (or its role removed, or its user deactivated) is refused by
/api/v1/decisions on the very next request, in every process: the decision's own load statement
checks the token, so no per-process memory of an earlier success can let a call through."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services
from accounts.models import ApiToken
from accounts.roles import GATEWAY
from tasks.models import ActivityEvent

URL = "/api/v1/decisions"


@pytest.fixture
def gateway_token(gateway):
    secret = ApiToken.new_secret()
    token = ApiToken.objects.create(user=gateway, name="gw", prefix=secret[:8], digest=ApiToken.digest_of(secret))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return token, client


def call(client, credential):
    return client.post(URL, {"token": credential, "scope": "github:write", "resource": "repo:acme/api"}, format="json")


def decisions_recorded() -> int:
    return ActivityEvent.objects.filter(kind="decision").count()


@pytest.mark.django_db
def test_a_revoked_token_is_refused_on_the_very_next_request(gateway_token, live_envelope, mint, admin):
    token, client = gateway_token
    credential = mint(live_envelope).token
    assert call(client, credential).json()["reason"] == "ok"  # remembered by this process now

    services.revoke_api_token(token=token, actor=admin)
    response = call(client, credential)

    assert response.status_code == 401
    assert decisions_recorded() == 1  # the refused call is not a decision


@pytest.mark.django_db
def test_a_token_revoked_behind_this_process_is_refused_too(gateway_token, live_envelope, mint):
    token, client = gateway_token
    credential = mint(live_envelope).token
    call(client, credential)

    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())  # as another process would

    assert call(client, credential).status_code == 401
    assert call(client, credential).status_code == 401


@pytest.mark.django_db
def test_a_revoked_token_cannot_even_ask_about_a_bad_credential(gateway_token, live_envelope, mint):
    token, client = gateway_token
    call(client, mint(live_envelope).token)
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())

    assert call(client, "not-a-jwt").status_code == 401
    assert decisions_recorded() == 1


@pytest.mark.django_db
def test_removing_the_gateway_role_takes_effect_on_the_next_request(gateway_token, gateway, live_envelope, mint):
    _, client = gateway_token
    credential = mint(live_envelope).token
    call(client, credential)

    gateway.groups.remove(Group.objects.get(name=GATEWAY))

    assert call(client, credential).status_code in (401, 403)


@pytest.mark.django_db
def test_deactivating_the_user_takes_effect_on_the_next_request(gateway_token, gateway, live_envelope, mint):
    _, client = gateway_token
    credential = mint(live_envelope).token
    call(client, credential)

    type(gateway).objects.filter(pk=gateway.pk).update(is_active=False)

    assert call(client, credential).status_code == 401


@pytest.mark.django_db
def test_a_live_token_keeps_working(gateway_token, live_envelope, mint):
    _, client = gateway_token
    credential = mint(live_envelope).token
    assert [call(client, credential).json()["reason"] for _ in range(3)] == ["ok"] * 3


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_revoked_from_another_process_and_refused_on_the_next_call(gateway_token, live_envelope, mint):
    token, client = gateway_token
    credential = mint(live_envelope).token
    assert call(client, credential).json()["reason"] == "ok"

    script = (
        "import django; django.setup()\n"
        "from django.utils import timezone\n"
        "from accounts.models import ApiToken\n"
        f"assert ApiToken.objects.filter(pk='{token.pk}').update(revoked_at=timezone.now()) == 1\n"
    )
    env = {**os.environ, "MANDATE_TESTING": "1", "DJANGO_SETTINGS_MODULE": "console.settings"}
    env["DATABASE_URL"] = _database_url()
    subprocess.run([sys.executable, "-c", script], env=env, cwd=Path(settings.BASE_DIR), check=True)

    assert call(client, credential).status_code == 401


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_on_postgresql_the_check_rides_in_the_decisions_two_statements(gateway_token, live_envelope, mint):
    token, client = gateway_token
    credential = mint(live_envelope).token
    call(client, credential)  # warm the authenticator, the keys and last_seen_at

    with CaptureQueriesContext(connection) as queries:
        assert call(client, credential).json()["reason"] == "ok"
    assert len(queries) == 2, [q["sql"][:80] for q in queries]

    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    with CaptureQueriesContext(connection) as queries:
        assert call(client, credential).status_code == 401
    assert len(queries) == 1, [q["sql"][:80] for q in queries]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/access/v1/evaluation", "/access/v1/evaluations", "/access/v1/search/action"])
def test_the_authzen_endpoints_refuse_a_revoked_token_on_the_next_request(gateway_token, live_envelope, mint, path):
    token, client = gateway_token
    credential = mint(live_envelope).token
    body = {
        "subject": {"type": "agent", "id": live_envelope.instance.spiffe_id, "properties": {"token": credential}},
        "action": {"name": "github:write"},
        "resource": {"type": "repo", "id": "acme/api"},
    }
    assert client.post(path, body, format="json").status_code == 200

    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())

    assert client.post(path, body, format="json").status_code == 401


@pytest.mark.django_db
def test_a_revoked_token_cannot_ask_in_a_batch_of_only_bad_credentials(gateway_token, live_envelope, mint):
    """A batch reads the caller's standing with its credentials; with none to load, it asks alone."""
    token, client = gateway_token
    call(client, mint(live_envelope).token)
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    subject = {"type": "agent", "id": live_envelope.instance.spiffe_id, "properties": {"token": "not-a-jwt"}}
    body = {
        "subject": subject,
        "action": {"name": "github:write"},
        "evaluations": [{"resource": {"type": "repo", "id": "acme/api"}}],
    }

    assert client.post("/access/v1/evaluations", body, format="json").status_code == 401
    assert decisions_recorded() == 1
