"""Input hygiene (#15): JSON nested too deeply is a 400 everywhere, CSV exports never carry a live
formula, secrets are scrubbed from what is stored (by key at any depth and case, and by value), and
reported events dated outside the accepted window are refused whole."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from accounts.models import ApiToken
from audit import services as audit
from audit.models import AuditEvent
from identities.models import Agent
from tasks import lifecycle
from tasks.models import ActivityEvent
from tests.helpers.api import written_rows
from tests.helpers.factories import make_agent

pytestmark = pytest.mark.django_db

MARKER = re.compile(r"\[redacted:[0-9a-f]{10}\]")
JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJlLWJ5dGVz"
PEM = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----"


def deep(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


def _rows_now() -> dict[str, int]:
    return {**written_rows(), "activity": ActivityEvent.objects.count()}


# --- JSON depth ------------------------------------------------------------------------------------


JSON_ENDPOINTS = [
    ("/api/v1/decisions", "gateway"),
    ("/api/v1/events", "gateway"),
    ("/api/v1/agents/", "owner"),
    ("/api/v1/envelopes/", "owner"),
    ("/api/v1/tokens/", "owner"),
    ("/api/v1/issuers/", "admin"),
    ("/api/v1/exceptions/", "admin"),
    ("/access/v1/evaluation", "gateway"),
    ("/access/v1/evaluations", "gateway"),
    ("/access/v1/search/action", "gateway"),
]


@pytest.mark.parametrize(("url", "role"), JSON_ENDPOINTS)
def test_json_nested_600_deep_is_a_400_naming_the_limit(request, api_client, url, role):
    client = api_client.as_user(request.getfixturevalue(role))
    before = _rows_now()
    response = client.post(url, data=f'{{"x": {deep(600)}}}', content_type="application/json")
    assert response.status_code == 400, response.content
    assert "nested deeper than 32 levels" in response.json()["detail"]
    assert _rows_now() == before


def test_the_depth_limit_is_32_containers():
    from core import json_input

    assert json_input.loads(deep(32)) is not None
    with pytest.raises(json_input.JsonInputError, match="deeper than 32"):
        json_input.loads(deep(33))
    with pytest.raises(json_input.JsonInputError, match="deeper than 32"):
        json_input.loads("[" * 5000 + "]" * 5000)  # deeper than the parser itself can go
    with pytest.raises(json_input.JsonInputError, match="JSON parse error"):
        json_input.loads(b"{not json")


def test_a_body_just_within_the_limit_reaches_the_endpoint(api_client, owner):
    body = f'{{"slug": "deep-ok", "name": "Deep", "description": "", "x": {deep(30)}}}'
    response = api_client.as_user(owner).post("/api/v1/agents/", data=body, content_type="application/json")
    assert "nested deeper" not in response.content.decode()


def test_every_drf_view_parses_json_through_the_depth_limited_parser():
    assert django_settings.REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] == ["core.json_input.DepthLimitedJSONParser"]


# --- CSV exports -----------------------------------------------------------------------------------


def test_audit_csv_export_escapes_formula_cells(api_client, admin, owner):
    agent = make_agent(owner, slug="sheet")
    lifecycle.pause_agent(agent=agent, actor=owner, reason='=HYPERLINK("https://evil.example","x")')
    lifecycle.resume_agent(agent=agent, actor=owner, reason="@SUM(1+1)*cmd|' /C calc'!A0")
    response = api_client.as_user(admin).get("/api/v1/audit/export?format=csv&target=agent:" + str(agent.id))
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    reasons = {row["verb"]: row["reason"] for row in rows}
    assert reasons["agent.paused"] == '\'=HYPERLINK("https://evil.example","x")'
    assert reasons["agent.resumed"].startswith("'@SUM")
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), row


def test_the_csv_writer_escapes_every_formula_start_and_leaves_numbers_alone():
    from core.csv_export import render

    text = render([["=1", "+1", "-1", "@1", "\t1", "\r1", "plain", -3, None]])
    assert next(csv.reader(io.StringIO(text))) == ["'=1", "'+1", "'-1", "'@1", "'\t1", "'\r1", "plain", "-3", ""]


# --- scrubbing -------------------------------------------------------------------------------------


def _secret_free(stored: object, *secrets: str) -> None:
    text = repr(stored)
    for secret in secrets:
        assert secret not in text, f"{secret[:20]!r} was stored"


def test_event_details_are_scrubbed_by_key_at_any_depth_and_case_and_by_value(api_client, live_envelope, mint):
    from tests.tasks.test_events import agent_client, event

    api_token = ApiToken.new_secret()
    details = {
        "Token": "tok-123456",
        "client_assertion": "assert-abcdef",
        "request": {"headers": [{"Authorization": "Basic dXNlcjpwYXNz", "Set-Cookie": "sid=s3cr3t"}]},
        "API_KEY": "k-987654321",
        "apiKey": "k2-987654321",
        "nested": {"deeper": {"Private-Key": "pk-material", "db_password": "hunter2-long"}},
        "note": f"used {JWT} and {api_token} then {PEM}",
        "raw": "Bearer abcdefghijklmnop",
        "tool": "git push",
        "has_secret": True,
    }
    response = agent_client(api_client, mint(live_envelope).token).post(
        "/api/v1/events", {"events": [event(details=details)]}, format="json"
    )
    assert response.status_code == 202, response.content
    stored = ActivityEvent.objects.get().details
    _secret_free(
        stored,
        "tok-123456",
        "assert-abcdef",
        "dXNlcjpwYXNz",
        "s3cr3t",
        "987654321",
        "pk-material",
        "hunter2",
        JWT,
        api_token,
        "MIGHAgEAMBMG",
        "abcdefghijklmnop",
    )
    assert stored["tool"] == "git push" and stored["has_secret"] is True
    assert MARKER.fullmatch(stored["Token"]) and MARKER.fullmatch(stored["request"]["headers"][0]["Set-Cookie"])
    assert stored["note"].startswith("used [redacted:") and " then [redacted:" in stored["note"]


def test_decision_context_is_scrubbed_by_key_and_value(api_client, gateway, live_envelope, mint):
    response = api_client.as_user(gateway).post(
        "/api/v1/decisions",
        {
            "token": mint(live_envelope).token,
            "scope": "github:write",
            "resource": "repo:acme/api",
            "context": {
                "AUTHORIZATION": "Bearer zyxwvutsrqponm",
                "Cookie": "session=cookie-value-1",
                "call": {"args": [{"api_key": "ak-5555555555"}], "comment": f"token was {JWT}"},
                "ticket": "INV-7",
            },
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    stored = ActivityEvent.objects.get(kind="decision").details["context"]
    _secret_free(stored, "zyxwvutsrqponm", "cookie-value-1", "ak-5555555555", JWT)
    assert stored["ticket"] == "INV-7" and MARKER.fullmatch(stored["call"]["args"][0]["api_key"])


def test_audit_rows_are_scrubbed_by_the_same_rules(owner):
    agent = make_agent(owner, slug="audited")
    audit.record(
        "agent.updated",
        actor=owner,
        target=agent,
        after={"Headers": {"X-Api-Key": "xk-123456789"}, "Refresh_Token": "rt-abcdefgh"},
        reason=f"pasted {PEM} by mistake",
    )
    row = AuditEvent.objects.filter(verb="agent.updated").latest("seq")
    _secret_free((row.after, row.reason), "xk-123456789", "rt-abcdefgh", "MIGHAgEAMBMG")
    assert row.reason.startswith("pasted [redacted:")


def test_the_fingerprint_is_stable_and_keyed_with_the_server_secret(settings):
    from core.scrub import scrub

    first = scrub({"token": "1234"})["token"]
    assert scrub({"token": "1234"})["token"] == first  # the same secret is recognisable …
    assert scrub({"token": "1235"})["token"] != first
    settings.SECRET_KEY = "another server's secret key, long enough to be one"
    assert scrub({"token": "1234"})["token"] != first  # … but only with this server's key


# --- event dates -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("occurred_at", "says"),
    [
        ("1970-01-01T00:00:00Z", "older than 7 days"),
        (lambda now: (now - timedelta(days=8)).isoformat(), "older than 7 days"),
        (lambda now: (now + timedelta(minutes=10)).isoformat(), "in the future"),
    ],
)
def test_events_dated_outside_the_window_are_refused_and_nothing_of_the_batch_is_written(
    api_client, live_envelope, mint, occurred_at, says
):
    from tests.tasks.test_events import agent_client, event

    now = timezone.now()
    when = occurred_at(now) if callable(occurred_at) else occurred_at
    batch = [event(occurred_at=now.isoformat()), event(occurred_at=when)]
    response = agent_client(api_client, mint(live_envelope).token).post(
        "/api/v1/events", {"events": batch}, format="json"
    )
    assert response.status_code == 400, response.content
    assert says in response.json()["events[1].occurred_at"][0]
    assert ActivityEvent.objects.count() == 0


def test_the_age_window_is_a_setting(api_client, live_envelope, mint, settings):
    from tests.tasks.test_events import agent_client, event

    settings.MANDATE_EVENT_MAX_AGE_DAYS = 30
    when = (timezone.now() - timedelta(days=8)).isoformat()
    response = agent_client(api_client, mint(live_envelope).token).post(
        "/api/v1/events", {"events": [event(occurred_at=when)]}, format="json"
    )
    assert response.status_code == 202, response.content
    assert Agent.objects.count() == 1
