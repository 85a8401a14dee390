"""/api/v1/agents/: register, list, read, change and the lifecycle verbs, with every refusal."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from identities.models import Agent
from tasks import lifecycle
from tests.helpers.api import ROLES, client_for, state_of, written_rows
from tests.helpers.factories import make_agent, make_instance

pytestmark = pytest.mark.django_db

AGENT_FIELDS = {
    "id",
    "slug",
    "name",
    "description",
    "owner",
    "status",
    "ceiling",
    "max_envelope_seconds",
    "created_at",
    "instance_count",
    "pending_change",
}


def _body(**overrides):
    body = {
        "slug": "invoice-triage",
        "name": "Invoice triage",
        "description": "reads invoices",
        "ceiling": ["github:read", "jira:read"],
        "max_envelope_seconds": 3600,
    }
    body.update(overrides)
    return body


def test_an_owner_registers_an_agent_and_gets_it_back_with_exactly_the_contract_fields(api_client, owner):
    response = api_client.as_user(owner).post("/api/v1/agents/", _body(), format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert set(data) == AGENT_FIELDS
    assert data["owner"] == "olivia"
    assert data["status"] == "active"
    assert data["ceiling"] == []  # in force once an identity admin approves it
    assert data["pending_change"]["ceiling"] == ["github:read", "jira:read"]
    assert data["instance_count"] == 0
    event = AuditEvent.objects.get(verb="agent.created")
    assert event.actor == "olivia" and event.target_id == data["id"]


def test_an_admin_registers_an_agent_for_an_owner_by_username(api_client, admin, owner):
    response = api_client.as_user(admin).post("/api/v1/agents/", _body(owner="olivia"), format="json")
    assert response.status_code == 201
    assert response.json()["owner"] == "olivia"


def test_an_owner_cannot_register_an_agent_for_someone_else(api_client, owner, other_owner):
    before = written_rows()
    response = api_client.as_user(owner).post("/api/v1/agents/", _body(owner="oscar"), format="json")
    assert response.status_code == 403
    assert written_rows() == before


def test_an_unknown_owner_is_bad_input_naming_the_field(api_client, admin):
    response = api_client.as_user(admin).post("/api/v1/agents/", _body(owner="nobody"), format="json")
    assert response.status_code == 400
    assert "owner" in response.json()


def test_a_taken_slug_is_bad_input_naming_the_slug(api_client, owner):
    make_agent(owner, slug="invoice-triage")
    response = api_client.as_user(owner).post("/api/v1/agents/", _body(), format="json")
    assert response.status_code == 400
    assert "slug" in response.json()


def test_owners_list_only_their_own_agents_while_admins_and_auditors_list_all(
    api_client, owner, other_owner, admin, auditor
):
    make_agent(owner, slug="mine")
    make_agent(other_owner, slug="theirs")
    slugs = lambda user: [a["slug"] for a in api_client.as_user(user).get("/api/v1/agents/").json()["results"]]  # noqa: E731
    assert slugs(owner) == ["mine"]
    assert slugs(other_owner) == ["theirs"]
    assert slugs(admin) == ["mine", "theirs"]
    assert slugs(auditor) == ["mine", "theirs"]


def test_the_list_filters_by_status(api_client, owner):
    make_agent(owner, slug="running")

    lifecycle.pause_agent(agent=make_agent(owner, slug="sleeping"), actor=owner)
    response = api_client.as_user(owner).get("/api/v1/agents/?status=paused")
    assert [a["slug"] for a in response.json()["results"]] == ["sleeping"]
    assert api_client.as_user(owner).get("/api/v1/agents/?status=asleep").status_code == 400


def test_instance_count_counts_instances_that_are_not_retired(api_client, owner):

    agent = make_agent(owner)
    make_instance(agent, label="a")
    lifecycle.retire_instance(instance=make_instance(agent, label="b"), actor=owner)
    assert api_client.as_user(owner).get(f"/api/v1/agents/{agent.slug}/").json()["instance_count"] == 1


def test_patch_changes_the_ceiling_and_writes_before_and_after(api_client, owner):
    agent = make_agent(owner)
    response = api_client.as_user(owner).patch(
        f"/api/v1/agents/{agent.slug}/", {"ceiling": ["github:read"], "name": "Renamed"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["ceiling"] == ["github:read"] and response.json()["name"] == "Renamed"
    event = AuditEvent.objects.get(verb="agent.updated")
    assert event.before["ceiling"] != event.after["ceiling"]


def test_patch_refuses_fields_that_only_transitions_or_admins_change(api_client, owner):
    agent = make_agent(owner)
    for field, value in [("status", "retired"), ("owner", "oscar"), ("slug", "other"), ("id", "x")]:
        response = api_client.as_user(owner).patch(f"/api/v1/agents/{agent.slug}/", {field: value}, format="json")
        assert response.status_code == 400, field
        assert field in response.json()
    assert state_of(Agent, agent.pk) == "active"


def test_put_is_not_part_of_the_contract(api_client, owner):
    agent = make_agent(owner)
    response = api_client.as_user(owner).put(f"/api/v1/agents/{agent.slug}/", _body(), format="json")
    assert response.status_code == 405


@pytest.mark.parametrize(
    ("verb", "from_status", "expected_code", "expected_status"),
    [
        ("pause", "active", 200, "paused"),
        ("pause", "paused", 200, "paused"),
        ("pause", "retired", 409, "retired"),
        ("resume", "paused", 200, "active"),
        ("resume", "active", 200, "active"),
        ("resume", "retired", 409, "retired"),
        ("retire", "active", 200, "retired"),
        ("retire", "paused", 200, "retired"),
        ("retire", "retired", 200, "retired"),
    ],
)
def test_lifecycle_verbs_move_the_agent_or_answer_409(
    api_client, owner, verb, from_status, expected_code, expected_status
):
    agent = make_agent(owner)
    Agent.objects.filter(pk=agent.pk).update(status=from_status)
    response = api_client.as_user(owner).post(
        f"/api/v1/agents/{agent.slug}/{verb}", {"reason": "testing"}, format="json"
    )
    assert response.status_code == expected_code, response.json()
    assert state_of(Agent, agent.pk) == expected_status
    if expected_code == 409:
        assert response.json()["code"] == "invalid_state"
    else:
        assert response.json()["status"] == expected_status


def test_pausing_an_agent_records_the_reason_and_pauses_its_instances(api_client, owner):
    agent = make_agent(owner)
    instance = make_instance(agent)
    api_client.as_user(owner).post(f"/api/v1/agents/{agent.slug}/pause", {"reason": "incident 42"}, format="json")
    assert AuditEvent.objects.get(verb="agent.paused").reason == "incident 42"
    instance.refresh_from_db()
    assert instance.status == "paused"


def test_lifecycle_verbs_have_no_trailing_slash(api_client, owner):
    agent = make_agent(owner)
    assert api_client.as_user(owner).post(f"/api/v1/agents/{agent.slug}/pause/").status_code == 404
    assert state_of(Agent, agent.pk) == "active"


def test_a_lifecycle_verb_works_without_a_body(api_client, owner):
    agent = make_agent(owner)
    assert api_client.as_user(owner).post(f"/api/v1/agents/{agent.slug}/pause").status_code == 200


# --- the permission matrix ------------------------------------------------------------------------

# role -> expected status, per endpoint. The agent belongs to ``owner``.
MATRIX = {
    "list": {"owner": 200, "other_owner": 200, "admin": 200, "auditor": 200, "gateway": 403, "anonymous": 401},
    "retrieve": {"owner": 200, "other_owner": 404, "admin": 200, "auditor": 200, "gateway": 403, "anonymous": 401},
    "create": {"owner": 201, "other_owner": 201, "admin": 201, "auditor": 403, "gateway": 403, "anonymous": 401},
    "patch": {"owner": 200, "other_owner": 404, "admin": 200, "auditor": 403, "gateway": 403, "anonymous": 401},
    "pause": {"owner": 200, "other_owner": 404, "admin": 200, "auditor": 403, "gateway": 403, "anonymous": 401},
    "resume": {"owner": 200, "other_owner": 404, "admin": 200, "auditor": 403, "gateway": 403, "anonymous": 401},
    "retire": {"owner": 200, "other_owner": 404, "admin": 200, "auditor": 403, "gateway": 403, "anonymous": 401},
    "register_instance": {
        "owner": 201,
        "other_owner": 404,
        "admin": 201,
        "auditor": 403,
        "gateway": 403,
        "anonymous": 401,
    },
}


def _call(client, endpoint, agent):
    from tests.helpers.factories import new_ed25519_key

    base = f"/api/v1/agents/{agent.slug}"
    if endpoint == "list":
        return client.get("/api/v1/agents/")
    if endpoint == "retrieve":
        return client.get(f"{base}/")
    if endpoint == "create":
        return client.post("/api/v1/agents/", _body(slug="fresh-agent"), format="json")
    if endpoint == "patch":
        return client.patch(f"{base}/", {"name": "changed"}, format="json")
    if endpoint == "register_instance":
        return client.post(f"{base}/instances/", {"public_jwk": new_ed25519_key()[1]}, format="json")
    return client.post(f"{base}/{endpoint}", {}, format="json")


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", list(MATRIX))
def test_permission_matrix(request, api_client, owner, role, endpoint):
    agent = make_agent(owner)
    if endpoint == "resume":
        Agent.objects.filter(pk=agent.pk).update(status="paused")
    client = client_for(role, request, api_client)
    before = written_rows()
    response = _call(client, endpoint, agent)
    assert response.status_code == MATRIX[endpoint][role], response.content
    if response.status_code >= 400:
        assert written_rows() == before
    if response.status_code == 401:
        assert response["WWW-Authenticate"] == "Bearer"


def test_a_revoked_or_unknown_token_is_401(api_client, owner):
    response = api_client.get("/api/v1/agents/", HTTP_AUTHORIZATION="Bearer mdt_not-a-real-token")
    assert response.status_code == 401


# --- bad input ------------------------------------------------------------------------------------

BAD_CREATE = [
    ("slug", {"slug": "Not A Slug"}),
    ("slug", {"slug": "x" * 64}),
    ("slug", {"slug": 12}),
    ("name", {"name": "n" * 201}),
    ("name", {"name": ["list"]}),
    ("description", {"description": "d" * 4001}),
    ("ceiling", {"ceiling": "github:read"}),
    ("ceiling", {"ceiling": ["not a scope"]}),
    ("ceiling", {"ceiling": [1]}),
    ("ceiling", {"ceiling": ["a:b"] * 201}),
    ("max_envelope_seconds", {"max_envelope_seconds": "3600"}),
    ("max_envelope_seconds", {"max_envelope_seconds": True}),
    ("max_envelope_seconds", {"max_envelope_seconds": 3600.5}),
    ("max_envelope_seconds", {"max_envelope_seconds": -1}),
    ("max_envelope_seconds", {"max_envelope_seconds": 10**30}),
    ("owner", {"owner": {"username": "olivia"}}),
    ("owner", {"owner": "nul\x00byte"}),
    ("colour", {"colour": "blue"}),
]


@pytest.mark.parametrize(("field", "override"), BAD_CREATE, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_CREATE)])
def test_bad_input_on_create_is_400_naming_the_field_and_writes_nothing(api_client, owner, field, override):
    before = written_rows()
    response = api_client.as_user(owner).post("/api/v1/agents/", _body(**override), format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert written_rows() == before


@pytest.mark.parametrize("missing", ["slug", "name", "ceiling", "max_envelope_seconds"])
def test_a_missing_required_field_is_named(api_client, owner, missing):
    body = _body()
    del body[missing]
    response = api_client.as_user(owner).post("/api/v1/agents/", body, format="json")
    assert response.status_code == 400 and missing in response.json()


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b'"a string"', b"null", b"\xff\xfe"])
def test_malformed_json_or_a_body_that_is_not_an_object_is_400(api_client, owner, raw):
    before = written_rows()
    response = api_client.as_user(owner).generic("POST", "/api/v1/agents/", raw, content_type="application/json")
    assert response.status_code == 400
    assert written_rows() == before


def test_a_form_encoded_body_is_refused_as_an_unsupported_media_type(api_client, owner):
    response = api_client.as_user(owner).post("/api/v1/agents/", {"slug": "x"})
    assert response.status_code == 415


# --- query counts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [2, 20])
def test_the_list_query_count_does_not_grow_with_rows(api_client, admin, owner, rows, django_assert_max_num_queries):
    for n in range(rows):
        agent = make_agent(owner, slug=f"agent-{n}")
        make_instance(agent)
    client = api_client.as_user(admin)
    # token, last_used_at, roles, count, page, pending changes (one query for the page)
    with django_assert_max_num_queries(6):
        response = client.get("/api/v1/agents/")
    assert response.json()["count"] == rows


# --- the services refuse on their own, whoever calls them -----------------------------------------


@pytest.mark.parametrize("role", ["auditor", "gateway", "other_owner"])
def test_the_identity_services_themselves_refuse_people_who_may_not_manage_the_agent(request, owner, role):
    from core.errors import PermissionDenied
    from identities import services
    from tests.helpers.factories import new_ed25519_key

    user = request.getfixturevalue(role)
    agent = make_agent(owner)
    instance = make_instance(agent)
    before = written_rows()
    calls = [
        lambda: lifecycle.pause_agent(agent=agent, actor=user),
        lambda: lifecycle.retire_agent(agent=agent, actor=user),
        lambda: services.update_agent(agent=agent, actor=user, changes={"name": "x"}),
        lambda: services.register_instance(agent=agent, actor=user, public_jwk=new_ed25519_key()[1]),
        lambda: lifecycle.retire_instance(instance=instance, actor=user),
    ]
    if role != "other_owner":
        calls.append(
            lambda: services.register_agent(actor=user, slug="sneaky", name="s", ceiling=[], max_envelope_seconds=600)
        )
    for call in calls:
        with pytest.raises(PermissionDenied):
            call()
    assert written_rows() == before


# --- lists and paths answer JSON, and bad paging is bad input ---------------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("page=0", "page"),
        ("page=abc", "page"),
        ("page=99", "page"),
        ("page_size=0", "page_size"),
        ("page_size=-3", "page_size"),
        ("page_size=null", "page_size"),
        ("status=", "status"),
    ],
)
def test_bad_paging_or_an_empty_filter_is_400_naming_it(api_client, owner, query, field):
    make_agent(owner)
    response = api_client.as_user(owner).get(f"/api/v1/agents/?{query}")
    assert response.status_code == 400 and field in response.json()


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/agents/NOT%20A%20SLUG/",
        "/api/v1/instances/123/pause",
        "/api/v1/nothing-here",
        "/api/v1/envelopes//approve",
    ],
)
def test_a_path_that_names_nothing_is_a_json_404_even_for_a_post(api_client, owner, path):
    client = api_client.as_user(owner)
    client.handler.enforce_csrf_checks = True
    for response in (client.get(path), client.post(path, {}, format="json")):
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json" and response.json()["detail"]
