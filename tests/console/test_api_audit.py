"""/api/v1/audit/: who reads what, filters, cursor pages, export, and the chain catching tampering."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from audit.models import AuditChain, AuditEvent
from identities import services
from tasks import lifecycle
from tests.helpers.factories import as_database_owner, make_agent, make_instance

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_agents(owner, other_owner):
    mine = make_agent(owner, slug="mine")
    theirs = make_agent(other_owner, slug="theirs")
    lifecycle.pause_agent(agent=mine, actor=owner, reason="maintenance")
    lifecycle.pause_agent(agent=theirs, actor=other_owner)
    return mine, theirs


def _results(client, url="/api/v1/audit/"):
    response = client.get(url)
    assert response.status_code == 200, response.content
    return response.json()["results"]


def test_admins_and_auditors_read_every_event(api_client, admin, auditor, two_agents):
    for user in (admin, auditor):
        agents = {e["agent"] for e in _results(api_client.as_user(user))}
        assert {str(a.id) for a in two_agents} <= agents


def test_an_owner_reads_only_the_events_of_their_own_agents(api_client, owner, two_agents):
    mine, _ = two_agents
    events = _results(api_client.as_user(owner))
    assert events and {e["agent"] for e in events} == {str(mine.id)}


@pytest.mark.parametrize(("role", "code"), [("gateway", 403), ("anonymous", 401)])
def test_gateways_and_strangers_read_nothing(request, api_client, role, code):
    client = api_client if role == "anonymous" else api_client.as_user(request.getfixturevalue(role))
    for url in ("/api/v1/audit/", "/api/v1/audit/export", "/api/v1/audit/verify"):
        assert client.get(url).status_code == code


def test_the_trail_is_read_only(api_client, admin, auditor):
    for user in (admin, auditor):
        assert api_client.as_user(user).post("/api/v1/audit/", {}, format="json").status_code in (403, 405)


def test_events_carry_actor_verb_target_before_after_and_request_id(api_client, admin, two_agents):
    mine, _ = two_agents
    event = _results(api_client.as_user(admin), f"/api/v1/audit/?verb=agent.paused&target=agent:{mine.id}")[0]
    assert event["actor"] == "olivia" and event["actor_type"] == "user"
    assert event["target_type"] == "agent" and event["target_id"] == str(mine.id) and event["target_label"] == "mine"
    assert event["before"] == {"status": "active"} and event["after"] == {"status": "paused"}
    assert event["reason"] == "maintenance"
    assert len(event["hash"]) == 64 and len(event["prev_hash"]) == 64


def test_the_request_id_of_the_api_call_is_on_its_event(api_client, owner):
    agent = make_agent(owner)
    api_client.as_user(owner).post(f"/api/v1/agents/{agent.slug}/pause", HTTP_X_REQUEST_ID="req-123")
    assert AuditEvent.objects.get(verb="agent.paused").request_id == "req-123"


def test_filters_by_actor_verb_target_and_since(api_client, admin, owner, two_agents):
    _mine, theirs = two_agents
    client = api_client.as_user(admin)
    assert {e["actor"] for e in _results(client, "/api/v1/audit/?actor=oscar")} == {"oscar"}
    assert {e["verb"] for e in _results(client, "/api/v1/audit/?verb=agent.created")} == {"agent.created"}
    assert {e["target_id"] for e in _results(client, f"/api/v1/audit/?target={theirs.id}")} == {str(theirs.id)}
    future = (timezone.now() + timedelta(hours=1)).isoformat()
    assert _results(client, f"/api/v1/audit/?since={future.replace('+', '%2B')}") == []
    past = (timezone.now() - timedelta(hours=1)).isoformat()
    assert len(_results(client, f"/api/v1/audit/?since={past.replace('+', '%2B')}")) == AuditEvent.objects.count()


def test_a_bad_since_is_400_naming_it(api_client, admin):
    response = api_client.as_user(admin).get("/api/v1/audit/?since=yesterday")
    assert response.status_code == 400 and "since" in response.json()


def test_the_list_pages_with_a_cursor_newest_first_and_no_count(api_client, admin, owner):
    agent = make_agent(owner)
    for n in range(4):
        services.update_agent(agent=agent, actor=owner, changes={"name": f"name {n}"})
    client = api_client.as_user(admin)
    first = client.get("/api/v1/audit/?page_size=2").json()
    assert "count" not in first and first["previous"] is None and first["next"]
    second = client.get(first["next"]).json()
    ids = [e["id"] for e in first["results"] + second["results"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 4


def test_export_streams_json_lines_oldest_first(api_client, auditor, two_agents):
    response = api_client.as_user(auditor).get("/api/v1/audit/export?format=jsonl")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("application/jsonl")
    lines = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert [line["id"] for line in lines] == sorted(AuditEvent.objects.values_list("id", flat=True))
    assert {"verb", "actor", "before", "after", "hash", "prev_hash"} <= set(lines[0])


def test_export_streams_csv_with_a_header(api_client, admin, two_agents):
    response = api_client.as_user(admin).get("/api/v1/audit/export?format=csv&verb=agent.paused")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 2 and {r["verb"] for r in rows} == {"agent.paused"}
    assert json.loads(rows[0]["after"]) == {"status": "paused"}


def test_an_owners_export_holds_only_their_agents(api_client, owner, two_agents):
    mine, _ = two_agents
    body = b"".join(api_client.as_user(owner).get("/api/v1/audit/export").streaming_content).decode()
    assert {json.loads(line)["agent"] for line in body.splitlines()} == {str(mine.id)}


def test_an_unknown_export_format_is_400_naming_it(api_client, admin):
    response = api_client.as_user(admin).get("/api/v1/audit/export?format=xml")
    assert response.status_code == 400 and "format" in response.json()


def test_verify_reports_an_intact_chain(api_client, auditor, two_agents):
    response = api_client.as_user(auditor).get("/api/v1/audit/verify")
    assert response.json() == {"ok": True, "checked": AuditEvent.objects.count(), "first_bad": None}


def test_verify_is_for_admins_and_auditors_not_owners(api_client, owner):
    assert api_client.as_user(owner).get("/api/v1/audit/verify").status_code == 403


def test_verify_detects_an_edited_row(api_client, admin, two_agents):
    mine, _ = two_agents
    edited = AuditEvent.objects.filter(verb="agent.created", agent_id=mine.id).get()
    # .save() refuses to touch an audit row; a queryset update is how tampering would look.
    with as_database_owner():
        AuditEvent.objects.filter(pk=edited.pk).update(actor="somebody-else")
    data = api_client.as_user(admin).get("/api/v1/audit/verify").json()
    assert data["ok"] is False
    assert data["first_bad"]["id"] == edited.id and "hash" in data["first_bad"]["problem"]


def test_verify_detects_an_edited_row_even_when_its_hash_is_recomputed(api_client, admin, two_agents):
    from audit.services import compute_hash

    mine, _ = two_agents
    edited = AuditEvent.objects.filter(verb="agent.created", agent_id=mine.id).get()
    edited.after = {**edited.after, "ceiling": ["everything:*"]}
    with as_database_owner():
        AuditEvent.objects.filter(pk=edited.pk).update(after=edited.after, hash=compute_hash(edited.prev_hash, edited))
    data = api_client.as_user(admin).get("/api/v1/audit/verify").json()
    # The recomputed hash lacks a MAC under the audit key, which the database does not hold.
    assert data["ok"] is False and data["first_bad"]["seq"] == edited.seq and "MAC" in data["first_bad"]["problem"]


def test_verify_detects_an_edit_made_in_raw_sql(api_client, admin, two_agents):
    row = AuditEvent.objects.filter(verb="agent.paused").order_by("id").first()
    with as_database_owner(), connection.cursor() as cursor:
        cursor.execute(f"UPDATE {AuditEvent._meta.db_table} SET reason = %s WHERE id = %s", ["nothing", row.id])
    data = api_client.as_user(admin).get("/api/v1/audit/verify").json()
    assert data["ok"] is False and data["first_bad"]["id"] == row.id


def test_verify_detects_a_deleted_row_in_the_middle(api_client, admin, owner):
    agent = make_agent(owner)
    make_instance(agent)
    lifecycle.pause_agent(agent=agent, actor=owner)
    gone = AuditEvent.objects.get(verb="instance.registered")
    with as_database_owner():  # a queryset delete bypasses the model's refusal, not the triggers
        AuditEvent.objects.filter(pk=gone.pk).delete()
    data = api_client.as_user(admin).get("/api/v1/audit/verify").json()
    assert data["ok"] is False and data["first_bad"]["seq"] == gone.seq + 1
    assert "missing" in data["first_bad"]["problem"]


def test_verify_detects_a_deleted_last_row(api_client, admin, owner):
    agent = make_agent(owner)
    lifecycle.pause_agent(agent=agent, actor=owner)
    last = AuditEvent.objects.filter(agent_id=agent.id).order_by("-seq").first()
    with as_database_owner():
        AuditEvent.objects.filter(pk=last.pk).delete()
    data = api_client.as_user(admin).get("/api/v1/audit/verify").json()
    assert data["ok"] is False and "end" in data["first_bad"]["problem"]
    assert AuditChain.objects.get(key=f"agent:{agent.id}").length == last.seq


def test_no_secret_ever_reaches_the_trail(api_client, owner):
    client = api_client.as_user(owner)
    secret = client.post("/api/v1/tokens/", {"name": "ci"}, format="json").json()["token"]
    agent = make_agent(owner)
    make_instance(agent)
    dump = json.dumps(list(AuditEvent.objects.values()), default=str)
    assert secret not in dump and secret[8:] not in dump


@pytest.mark.parametrize("rows", [3, 30])
def test_the_list_query_count_does_not_grow_with_rows(api_client, admin, owner, rows, django_assert_max_num_queries):
    agent = make_agent(owner)
    for n in range(rows):
        services.update_agent(agent=agent, actor=owner, changes={"name": f"n{n}"})
    client = api_client.as_user(admin)
    # token, last_used_at, roles, page (a cursor page needs no COUNT)
    with django_assert_max_num_queries(4):
        response = client.get("/api/v1/audit/")
    # created, its ceiling requested and approved, then one row per rename
    assert len(response.json()["results"]) == rows + 3


def test_an_owners_list_query_count_does_not_grow_with_rows(api_client, owner, django_assert_max_num_queries):
    agent = make_agent(owner)
    for n in range(20):
        services.update_agent(agent=agent, actor=owner, changes={"name": f"n{n}"})
    client = api_client.as_user(owner)
    with django_assert_max_num_queries(4):
        assert client.get("/api/v1/audit/").status_code == 200


@pytest.mark.parametrize(
    ("query", "field"),
    [("cursor=garbage", "cursor"), ("page_size=0", "page_size"), ("since=", "since"), ("verb=", "verb")],
)
def test_a_bad_cursor_page_size_or_empty_filter_is_400_naming_it(api_client, admin, query, field):
    response = api_client.as_user(admin).get(f"/api/v1/audit/?{query}")
    assert response.status_code == 400 and field in response.json()
