"""/api/v1/envelopes/: request, read, approve/deny, revoke, complete, re-task, and the refusals."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from tasks import lifecycle, services
from tasks.models import TaskEnvelope
from tests.helpers.api import ROLES, client_for, state_of, written_rows
from tests.helpers.factories import make_agent, make_envelope, make_instance

pytestmark = pytest.mark.django_db

ENVELOPE_FIELDS = {
    "id",
    "instance",
    "agent",
    "state",
    "risk",
    "intent",
    "scopes",
    "resources",
    "duration_seconds",
    "max_actions",
    "actions_used",
    "may_delegate",
    "delegation_depth",
    "requested_by",
    "required_approvals",
    "approvals",
    "approved_at",
    "expires_at",
    "ended_at",
    "end_reason",
    "policy_version",
    "supersedes",
    "superseded_by",
    "parent_envelope",
}


@pytest.fixture
def instance(owner):
    return make_instance(make_agent(owner, max_envelope_seconds=4 * 3600))


def _body(for_instance, **overrides):
    body = {
        "instance": str(for_instance.id),
        "intent": "triage invoices",
        "scopes": ["github:write"],
        "resources": ["repo:acme/*"],
        "duration_seconds": 1800,
        "max_actions": 50,
    }
    body.update(overrides)
    return body


def test_an_owner_requests_an_envelope_that_waits_for_an_admin(api_client, owner, instance):
    response = api_client.as_user(owner).post("/api/v1/envelopes/", _body(instance), format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert set(data) >= ENVELOPE_FIELDS
    assert data["state"] == "pending" and data["risk"] == "medium" and data["required_approvals"] == 1
    assert data["requested_by"] == "olivia" and data["agent"] == instance.agent.slug
    assert data["instance"] == str(instance.id)
    assert data["may_delegate"] is False and data["delegation_depth"] == 0
    assert data["approvals"] == [] and data["expires_at"] is None and data["policy_version"]


def test_a_low_risk_short_request_is_auto_approved_by_a_named_rule(api_client, owner, instance):
    response = api_client.as_user(owner).post(
        "/api/v1/envelopes/",
        _body(instance, scopes=["github:read"], resources=["repo:acme/site"], duration_seconds=600, max_actions=10),
        format="json",
    )
    data = response.json()
    assert response.status_code == 201 and data["state"] == "approved"
    assert data["auto_approved_by"] == "low-risk-short-task" and data["expires_at"]
    event = AuditEvent.objects.get(verb="envelope.approved", target_id=data["id"])
    assert event.actor_type == "policy" and event.actor == "low-risk-short-task"


def test_an_admin_approves_and_the_clock_starts_at_approval(api_client, owner, admin, instance):
    envelope = make_envelope(instance)
    response = api_client.as_user(admin).post(
        f"/api/v1/envelopes/{envelope.id}/approve", {"comment": "go"}, format="json"
    )
    assert response.status_code == 200, response.json()
    data = response.json()
    assert data["state"] == "approved" and data["approved_at"] and data["expires_at"]
    assert [(a["by"], a["decision"], a["comment"]) for a in data["approvals"]] == [("ada", "approve", "go")]
    assert data["approvals"][0]["at"]


def test_a_high_risk_envelope_needs_two_different_admins(api_client, owner, admin, second_admin):
    agent = make_agent(owner, ceiling=["prod:deploy"])
    envelope = make_envelope(make_instance(agent), scopes=["prod:deploy"], duration_seconds=600)
    assert envelope.risk == "high" and envelope.required_approvals == 2
    first = api_client.as_user(admin).post(f"/api/v1/envelopes/{envelope.id}/approve", format="json")
    assert first.status_code == 200 and first.json()["state"] == "pending"
    again = api_client.as_user(admin).post(f"/api/v1/envelopes/{envelope.id}/approve", format="json")
    assert again.status_code == 403  # one admin counts once: a second vote is a separation-of-duties refusal
    second = api_client.as_user(second_admin).post(f"/api/v1/envelopes/{envelope.id}/approve", format="json")
    assert second.json()["state"] == "approved" and len(second.json()["approvals"]) == 2


def test_nobody_approves_their_own_request(api_client, admin, instance):
    envelope = make_envelope(instance, actor=admin)
    before = written_rows()
    response = api_client.as_user(admin).post(f"/api/v1/envelopes/{envelope.id}/approve", format="json")
    assert response.status_code == 403
    assert written_rows() == before


def test_an_owner_who_is_also_an_admin_never_approves_a_high_risk_envelope_for_their_own_agent(
    api_client, admin, owner
):
    agent = make_agent(admin, ceiling=["prod:deploy"])
    envelope = make_envelope(make_instance(agent), actor=admin, scopes=["prod:deploy"], duration_seconds=600)
    # requested by someone else, so only the ownership rule can refuse it
    TaskEnvelope.objects.filter(pk=envelope.pk).update(requested_by=owner)
    response = api_client.as_user(admin).post(f"/api/v1/envelopes/{envelope.id}/approve", format="json")
    assert response.status_code == 403


def test_deny_needs_a_reason_and_ends_the_request(api_client, admin, instance):
    envelope = make_envelope(instance)
    client = api_client.as_user(admin)
    missing = client.post(f"/api/v1/envelopes/{envelope.id}/deny", {}, format="json")
    assert missing.status_code == 400 and "comment" in missing.json()
    response = client.post(f"/api/v1/envelopes/{envelope.id}/deny", {"comment": "too broad"}, format="json")
    assert response.status_code == 200
    assert response.json()["state"] == "denied" and response.json()["end_reason"] == "too broad"
    assert response.json()["approvals"][0]["decision"] == "deny"


def test_revoke_and_complete_end_a_live_envelope(api_client, owner, admin, instance):
    first, second = make_envelope(instance), make_envelope(instance)
    for envelope in (first, second):
        services.approve_envelope(envelope=envelope, actor=admin)
    client = api_client.as_user(owner)
    revoked = client.post(f"/api/v1/envelopes/{first.id}/revoke", {"reason": "done early"}, format="json")
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked" and revoked.json()["ended_at"]
    completed = client.post(f"/api/v1/envelopes/{second.id}/complete")
    assert completed.status_code == 200 and completed.json()["state"] == "completed"


def test_retask_answers_201_with_the_new_pending_envelope_and_supersedes_the_old(api_client, owner, admin, instance):
    old = make_envelope(instance)
    services.approve_envelope(envelope=old, actor=admin)
    body = _body(instance, scopes=["github:read"], intent="only read now")
    del body["instance"]
    response = api_client.as_user(owner).post(f"/api/v1/envelopes/{old.id}/retask", body, format="json")
    assert response.status_code == 201, response.json()
    new = response.json()
    assert new["state"] == "pending" and new["supersedes"] == str(old.id) and new["intent"] == "only read now"
    old_data = api_client.as_user(owner).get(f"/api/v1/envelopes/{old.id}/").json()
    assert old_data["state"] == "superseded" and old_data["superseded_by"] == new["id"]


def test_retask_refuses_an_instance_field(api_client, owner, admin, instance):
    old = make_envelope(instance)
    services.approve_envelope(envelope=old, actor=admin)
    response = api_client.as_user(owner).post(f"/api/v1/envelopes/{old.id}/retask", _body(instance), format="json")
    assert response.status_code == 400 and "instance" in response.json()
    assert state_of(TaskEnvelope, old.pk, "state") == "approved"


@pytest.mark.parametrize(
    ("verb", "from_state", "expected_code"),
    [
        ("approve", "approved", 409),
        ("approve", "denied", 409),
        ("approve", "completed", 409),
        ("deny", "approved", 409),
        ("deny", "expired", 409),
        ("revoke", "pending", 409),
        ("revoke", "completed", 409),
        ("revoke", "denied", 409),
        ("complete", "pending", 409),
        ("complete", "revoked", 409),
        ("complete", "superseded", 409),
        ("retask", "pending", 409),
        ("retask", "completed", 409),
        ("retask", "expired", 409),
    ],
)
def test_a_verb_from_a_state_that_does_not_allow_it_is_409(
    api_client, owner, admin, instance, verb, from_state, expected_code
):
    envelope = make_envelope(instance)
    TaskEnvelope.objects.filter(pk=envelope.pk).update(state=from_state)
    body = {"comment": "x"} if verb in ("approve", "deny") else {}
    if verb == "retask":
        body = _body(instance)
        del body["instance"]
    actor = admin if verb in ("approve", "deny") else owner
    before = written_rows()
    response = api_client.as_user(actor).post(f"/api/v1/envelopes/{envelope.id}/{verb}", body, format="json")
    assert response.status_code == expected_code, response.json()
    assert response.json()["code"] == "invalid_state"
    assert written_rows() == before
    assert state_of(TaskEnvelope, envelope.pk, "state") == from_state


def test_the_list_filters_by_state_agent_and_instance(api_client, owner, admin):
    first = make_instance(make_agent(owner, slug="first"))
    second = make_instance(make_agent(owner, slug="second"))
    a, b = make_envelope(first), make_envelope(second)
    services.approve_envelope(envelope=b, actor=admin)
    client = api_client.as_user(owner)
    ids = lambda url: {e["id"] for e in client.get(url).json()["results"]}  # noqa: E731
    assert ids("/api/v1/envelopes/?state=pending") == {str(a.id)}
    assert ids("/api/v1/envelopes/?agent=second") == {str(b.id)}
    assert ids(f"/api/v1/envelopes/?instance={first.id}") == {str(a.id)}
    assert client.get("/api/v1/envelopes/?state=open").status_code == 400
    assert client.get("/api/v1/envelopes/?instance=nope").status_code == 400


def test_owners_see_only_their_own_agents_envelopes(api_client, owner, other_owner, instance):
    theirs = make_envelope(make_instance(make_agent(other_owner, slug="theirs")))
    mine = make_envelope(instance)
    client = api_client.as_user(owner)
    assert [e["id"] for e in client.get("/api/v1/envelopes/").json()["results"]] == [str(mine.id)]
    assert client.get(f"/api/v1/envelopes/{theirs.id}/").status_code == 404


def test_an_owner_cannot_request_an_envelope_for_another_owners_instance(api_client, owner, other_owner):
    theirs = make_instance(make_agent(other_owner, slug="theirs"))
    before = written_rows()
    response = api_client.as_user(owner).post("/api/v1/envelopes/", _body(theirs), format="json")
    assert response.status_code == 400 and "instance" in response.json()
    assert written_rows() == before


# --- bad input ------------------------------------------------------------------------------------

BAD = [
    ("scopes", {"scopes": ["prod:deploy"]}),  # outside the agent's ceiling
    ("scopes", {"scopes": []}),
    ("scopes", {"scopes": "github:read"}),
    ("scopes", {"scopes": ["GitHub read"]}),
    ("scopes", {"scopes": [None]}),
    ("duration_seconds", {"duration_seconds": 5 * 3600}),  # longer than the agent allows
    ("duration_seconds", {"duration_seconds": 0}),
    ("duration_seconds", {"duration_seconds": "600"}),
    ("duration_seconds", {"duration_seconds": 600.0}),
    ("duration_seconds", {"duration_seconds": 10**40}),
    ("max_actions", {"max_actions": -1}),  # a negative budget
    ("max_actions", {"max_actions": 0}),
    ("max_actions", {"max_actions": True}),
    ("max_actions", {"max_actions": 10**7}),
    ("may_delegate", {"may_delegate": 1}),
    ("may_delegate", {"may_delegate": "true"}),
    ("delegation_depth", {"delegation_depth": 2}),  # delegation depth without may_delegate
    ("delegation_depth", {"may_delegate": True, "delegation_depth": 99}),
    ("delegation_depth", {"may_delegate": True, "delegation_depth": -1}),
    ("intent", {"intent": ""}),
    ("intent", {"intent": "   "}),
    ("intent", {"intent": "i" * 4001}),
    ("intent", {"intent": {"text": "x"}}),
    ("resources", {"resources": ["has space"]}),
    ("resources", {"resources": ["r" * 513]}),
    ("resources", {"resources": ["x"] * 101}),
    ("resources", {"resources": "repo:acme/*"}),
    ("instance", {"instance": "not-a-uuid"}),
    ("instance", {"instance": 12345}),
    ("instance", {"instance": "00000000-0000-0000-0000-000000000000"}),
    ("budget", {"budget": 5}),
]


@pytest.mark.parametrize(("field", "override"), BAD, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD)])
def test_bad_input_is_400_naming_the_field_and_writes_nothing(api_client, owner, instance, field, override):
    before = written_rows()
    response = api_client.as_user(owner).post("/api/v1/envelopes/", _body(instance, **override), format="json")
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert written_rows() == before


def test_a_duration_the_policy_refuses_for_the_risk_is_400_naming_duration(api_client, owner):
    agent = make_agent(owner, ceiling=["prod:deploy"], max_envelope_seconds=8 * 3600)
    instance = make_instance(agent)
    response = api_client.as_user(owner).post(
        "/api/v1/envelopes/", _body(instance, scopes=["prod:deploy"], duration_seconds=2 * 3600), format="json"
    )
    assert response.status_code == 400 and "duration_seconds" in response.json()


def test_a_paused_instance_cannot_get_an_envelope(api_client, owner, instance):

    lifecycle.pause_instance(instance=instance, actor=owner)
    response = api_client.as_user(owner).post("/api/v1/envelopes/", _body(instance), format="json")
    assert response.status_code == 400 and "instance" in response.json()


@pytest.mark.parametrize("raw", [b"{", b"[1, 2]", b"42"])
def test_malformed_json_is_400(api_client, owner, raw):
    response = api_client.as_user(owner).generic("POST", "/api/v1/envelopes/", raw, content_type="application/json")
    assert response.status_code == 400


# --- the permission matrix ------------------------------------------------------------------------

MATRIX = {
    "list": {"owner": 200, "other_owner": 200, "admin": 200, "auditor": 200, "gateway": 403, "anonymous": 401},
    "retrieve": {"owner": 200, "other_owner": 404, "admin": 200, "auditor": 200, "gateway": 403, "anonymous": 401},
    "create": {"owner": 201, "other_owner": 400, "admin": 201, "auditor": 403, "gateway": 403, "anonymous": 401},
    "approve": {"owner": 403, "other_owner": 404, "admin": 200, "auditor": 403, "gateway": 403, "anonymous": 401},
    "deny": {"owner": 403, "other_owner": 404, "admin": 200, "auditor": 403, "gateway": 403, "anonymous": 401},
    "revoke": {"owner": 200, "other_owner": 404, "admin": 200, "auditor": 403, "gateway": 403, "anonymous": 401},
    "complete": {"owner": 200, "other_owner": 404, "admin": 200, "auditor": 403, "gateway": 403, "anonymous": 401},
    "retask": {"owner": 201, "other_owner": 404, "admin": 201, "auditor": 403, "gateway": 403, "anonymous": 401},
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", list(MATRIX))
def test_permission_matrix(request, api_client, owner, second_admin, instance, role, endpoint):
    envelope = make_envelope(instance)
    if endpoint in ("revoke", "complete", "retask"):
        services.approve_envelope(envelope=envelope, actor=second_admin)
    client = client_for(role, request, api_client)
    before = written_rows()
    base = f"/api/v1/envelopes/{envelope.id}"
    if endpoint == "list":
        response = client.get("/api/v1/envelopes/")
    elif endpoint == "retrieve":
        response = client.get(f"{base}/")
    elif endpoint == "create":
        response = client.post("/api/v1/envelopes/", _body(instance), format="json")
    elif endpoint == "retask":
        body = _body(instance)
        del body["instance"]
        response = client.post(f"{base}/retask", body, format="json")
    else:
        response = client.post(
            f"{base}/{endpoint}", {"comment": "reason"} if endpoint in ("approve", "deny") else {}, format="json"
        )
    assert response.status_code == MATRIX[endpoint][role], response.content
    if response.status_code >= 400:
        assert written_rows() == before


# --- query counts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [2, 20])
def test_the_list_query_count_does_not_grow_with_rows(
    api_client, owner, admin, instance, rows, django_assert_max_num_queries
):
    for n in range(rows):
        envelope = make_envelope(instance, intent=f"task {n}")
        if n % 2:
            services.approve_envelope(envelope=envelope, actor=admin)
    client = api_client.as_user(admin)
    # token, last_used_at, roles, count, page, approvals (one prefetch for the whole page)
    with django_assert_max_num_queries(6):
        response = client.get("/api/v1/envelopes/")
    assert response.json()["count"] == rows
