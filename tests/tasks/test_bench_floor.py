"""bench/bench_floor.py measures the hot paths against floors that send the project's own
statements and nothing else. A floor that stopped doing its statements' work (no record, no
action taken, no count) would make the bound it reports look better than any implementation
could be: these tests hold the floors to the same writes as the real endpoints."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import ApiToken
from core.sql import RATE_COUNTER_TABLE
from tasks.models import ActivityEvent

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

BENCH = str(Path(__file__).resolve().parents[2] / "bench")


@pytest.fixture
def floor(settings, gateway, monkeypatch):
    monkeypatch.syspath_prepend(BENCH)
    settings.ROOT_URLCONF = "floor_urls"
    secret = ApiToken.new_secret()
    ApiToken.objects.create(user=gateway, name="gw", prefix=secret[:8], digest=ApiToken.digest_of(secret))
    import floor_urls

    floor_urls._CALLER.clear()
    floor_urls._IDS.clear()
    yield floor_urls
    sys.modules.pop("floor_urls", None)


def _call(client, path, jti):
    body = {"jti": jti, "scope": "github:write", "resource": "repo:acme/api", "context": {"ticket": "B-1"}}
    return client.post(path, body, content_type="application/json")


@pytest.mark.parametrize(("path", "statements"), [("/floor/decision", 2), ("/floor/record", 1)])
def test_a_floor_decision_takes_an_action_and_is_recorded_in_its_statements(
    floor, client, live_envelope, mint, path, statements
):
    jti = mint(live_envelope).credential.jti
    _call(client, path, jti)  # the record floor remembers the credential's ids after this one

    with CaptureQueriesContext(connection) as queries:
        answer = _call(client, path, jti).json()

    assert answer["allow"] is True and answer["reason"] == "ok"
    assert answer["remaining_actions"] == live_envelope.max_actions - 2
    live_envelope.refresh_from_db()
    assert live_envelope.actions_used == 2
    recorded = ActivityEvent.objects.filter(kind="decision", jti=jti).order_by("id")
    assert [(e.allow, e.reason, e.scope, e.resource) for e in recorded] == [
        (True, "ok", "github:write", "repo:acme/api")
    ] * 2
    assert recorded.last().pk == answer["decision_id"]
    assert len(queries) == statements


def test_the_introspection_floor_counts_both_limits_and_reads_the_credential_in_one_statement(
    floor, client, live_envelope, mint
):
    jti = mint(live_envelope).credential.jti
    client.post("/floor/introspect", {"jti": jti})  # reads the bench's API token once per process
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT coalesce(sum(n), 0) FROM {RATE_COUNTER_TABLE}")
        before = cursor.fetchone()[0]

    with CaptureQueriesContext(connection) as queries:
        answer = client.post("/floor/introspect", {"jti": jti}).json()

    assert answer == {"active": True, "jti": jti, "token_type": "Bearer"}
    assert len(queries) == 1
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT coalesce(sum(n), 0) FROM {RATE_COUNTER_TABLE}")
        assert cursor.fetchone()[0] == before + 2
