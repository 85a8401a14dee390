"""A new agent's ceiling, a wider ceiling or a longer longest envelope wait for an identity admin
other than the requester; narrowing applies at once and revokes what it removes (#14)."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AuditEvent
from identities.models import Agent, AgentChange, Credential, Instance
from tasks import lifecycle
from tasks.models import TaskEnvelope
from tests.helpers.factories import make_agent, make_envelope, make_instance
from tests.helpers.oauth import approve

pytestmark = pytest.mark.django_db

NEW = {
    "slug": "deployer",
    "name": "Deployer",
    "ceiling": ["github:read", "deploy:production"],
    "max_envelope_seconds": 3600,
}


def _agent(api_client, user, slug):
    return api_client.as_user(user).get(f"/api/v1/agents/{slug}/").json()


# --- registration ---------------------------------------------------------------------------------


def test_an_agent_an_owner_registers_starts_with_an_empty_ceiling_and_its_request_pending(api_client, owner):
    response = api_client.as_user(owner).post("/api/v1/agents/", NEW, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["ceiling"] == []
    change = body["pending_change"]
    assert set(change) == {"id", "ceiling", "max_envelope_seconds", "requested_by", "requested_at"}
    assert change["ceiling"] == ["deploy:production", "github:read"]
    assert change["max_envelope_seconds"] == 3600
    assert change["requested_by"] == "olivia"
    assert AuditEvent.objects.filter(verb="agent.change_requested", target_id=body["id"]).exists()


def test_an_envelope_within_a_pending_ceiling_is_refused_until_an_admin_approves(api_client, owner, admin):
    api_client.as_user(owner).post("/api/v1/agents/", NEW, format="json")
    agent = Agent.objects.get(slug="deployer")
    instance = make_instance(agent)
    with pytest.raises(Exception, match="ceiling"):
        make_envelope(instance, scopes=["github:read"])

    response = api_client.as_user(admin).post(
        "/api/v1/agents/deployer/pending-change/approve", {"comment": "ok for the release train"}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert response.json()["ceiling"] == ["deploy:production", "github:read"]
    assert response.json()["pending_change"] is None
    make_envelope(Instance.objects.get(pk=instance.pk), scopes=["github:read"])
    event = AuditEvent.objects.get(verb="agent.change_approved")
    assert event.actor == "ada" and event.reason == "ok for the release train"
    assert event.after["ceiling"] == ["deploy:production", "github:read"]


def test_the_requester_may_not_approve_their_own_change_even_as_an_identity_admin(
    api_client, admin, second_admin, owner
):
    response = api_client.as_user(admin).post("/api/v1/agents/", {**NEW, "owner": "olivia"}, format="json")
    assert response.status_code == 201
    assert response.json()["ceiling"] == [] and response.json()["pending_change"]["requested_by"] == "ada"

    refused = api_client.as_user(admin).post("/api/v1/agents/deployer/pending-change/approve", {}, format="json")
    assert refused.status_code == 403
    assert "other than" in refused.json()["detail"]
    assert Agent.objects.get(slug="deployer").ceiling == []

    assert (
        api_client.as_user(second_admin).post("/api/v1/agents/deployer/pending-change/approve", {}, format="json")
    ).status_code == 200


@pytest.mark.parametrize("role", ["owner", "auditor", "gateway"])
def test_only_identity_admins_decide_pending_changes(request, api_client, owner, role):
    api_client.as_user(owner).post("/api/v1/agents/", NEW, format="json")
    user = request.getfixturevalue(role)
    for verb in ("approve", "deny"):
        response = api_client.as_user(user).post(f"/api/v1/agents/deployer/pending-change/{verb}", {}, format="json")
        assert response.status_code == 403, (role, verb)
    assert Agent.objects.get(slug="deployer").ceiling == []
    assert AgentChange.objects.get().state == "pending"


def test_a_denied_change_leaves_the_ceiling_as_it_was_and_says_why(api_client, owner, admin):
    api_client.as_user(owner).post("/api/v1/agents/", NEW, format="json")

    response = api_client.as_user(admin).post(
        "/api/v1/agents/deployer/pending-change/deny", {"comment": "no production deploys"}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["ceiling"] == [] and response.json()["pending_change"] is None
    assert AuditEvent.objects.get(verb="agent.change_denied").reason == "no production deploys"


def test_deciding_when_nothing_is_pending_is_a_409(api_client, owner, admin):
    agent = make_agent(owner)
    response = api_client.as_user(admin).post(f"/api/v1/agents/{agent.slug}/pending-change/approve", {}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "no_pending_change"


# --- widening and narrowing -----------------------------------------------------------------------


def test_an_owner_widening_the_ceiling_gets_202_and_nothing_changes_until_approved(api_client, owner, admin):
    agent = make_agent(owner, ceiling=["github:read"])

    response = api_client.as_user(owner).patch(
        f"/api/v1/agents/{agent.slug}/",
        {"ceiling": ["github:read", "secrets:read", "deploy:production"]},
        format="json",
    )

    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["ceiling"] == ["github:read"]
    assert body["pending_change"]["ceiling"] == ["deploy:production", "github:read", "secrets:read"]
    assert Agent.objects.get(pk=agent.pk).ceiling == ["github:read"]
    assert _agent(api_client, owner, agent.slug)["pending_change"]["id"] == body["pending_change"]["id"]


def test_raising_the_longest_envelope_is_pending_too(api_client, owner):
    agent = make_agent(owner, max_envelope_seconds=3600)

    response = api_client.as_user(owner).patch(
        f"/api/v1/agents/{agent.slug}/", {"max_envelope_seconds": 7200}, format="json"
    )

    assert response.status_code == 202
    assert response.json()["max_envelope_seconds"] == 3600
    assert response.json()["pending_change"]["max_envelope_seconds"] == 7200


def test_a_second_widening_while_one_is_pending_is_a_409_and_changes_nothing(api_client, owner):
    agent = make_agent(owner, ceiling=["github:read"])
    client = api_client.as_user(owner)
    client.patch(f"/api/v1/agents/{agent.slug}/", {"ceiling": ["github:read", "jira:read"]}, format="json")

    response = client.patch(
        f"/api/v1/agents/{agent.slug}/", {"ceiling": ["github:read", "secrets:read"], "name": "x"}, format="json"
    )

    assert response.status_code == 409
    assert response.json()["code"] == "change_pending"
    assert AgentChange.objects.filter(agent=agent, state="pending").count() == 1
    assert Agent.objects.get(pk=agent.pk).name != "x"


def test_narrowing_applies_at_once_and_revokes_live_envelopes_that_hold_a_removed_scope(api_client, owner, admin):
    agent = make_agent(owner, ceiling=["github:read", "github:write", "jira:read"])
    instance = make_instance(agent)
    holds_write = approve(make_envelope(instance, scopes=["github:write"]), admin)
    reads_only = approve(make_envelope(instance, scopes=["jira:read"], resources=["issue:FIN-*"]), admin)
    pending = make_envelope(instance, scopes=["github:read", "github:write"])
    assert pending.state == "pending"

    response = api_client.as_user(owner).patch(
        f"/api/v1/agents/{agent.slug}/", {"ceiling": ["github:read", "jira:read"]}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert response.json()["ceiling"] == ["github:read", "jira:read"]
    assert response.json()["pending_change"] is None
    assert TaskEnvelope.objects.get(pk=holds_write.pk).state == "revoked"
    assert "github:write" in TaskEnvelope.objects.get(pk=holds_write.pk).end_reason
    assert TaskEnvelope.objects.get(pk=reads_only.pk).state == "approved"
    assert TaskEnvelope.objects.get(pk=pending.pk).state == "denied"
    assert AuditEvent.objects.filter(verb="envelope.revoked", target_id=str(holds_write.pk)).exists()
    assert AuditEvent.objects.filter(verb="agent.updated").exists()


def test_narrowing_revokes_the_credentials_under_the_revoked_envelope(owner, admin, client):
    from tests.helpers.oauth import post_token, token_form

    agent = make_agent(owner)
    instance = make_instance(agent)
    envelope = approve(make_envelope(instance, scopes=["github:write"]), admin)
    assert post_token(client, token_form(instance, envelope)).status_code == 200

    lifecycle.update_agent(agent=agent, actor=owner, changes={"ceiling": ["github:read"]})

    assert not Credential.objects.filter(envelope=envelope, status="active").exists()


def test_a_change_that_both_removes_and_adds_removes_at_once_and_waits_for_the_addition(api_client, owner, admin):
    agent = make_agent(owner, ceiling=["github:read", "github:write"])

    response = api_client.as_user(owner).patch(
        f"/api/v1/agents/{agent.slug}/", {"ceiling": ["github:read", "jira:read"]}, format="json"
    )

    assert response.status_code == 202
    assert response.json()["ceiling"] == ["github:read"]
    assert response.json()["pending_change"]["ceiling"] == ["github:read", "jira:read"]
    approved = api_client.as_user(admin).post(f"/api/v1/agents/{agent.slug}/pending-change/approve", {}, format="json")
    assert approved.json()["ceiling"] == ["github:read", "jira:read"]


def test_renaming_alone_applies_at_once(api_client, owner):
    agent = make_agent(owner)
    response = api_client.as_user(owner).patch(f"/api/v1/agents/{agent.slug}/", {"name": "Renamed"}, format="json")
    assert response.status_code == 200 and response.json()["name"] == "Renamed"


def test_the_agent_list_shows_pending_changes_without_a_query_per_row(
    api_client, owner, admin, django_assert_max_num_queries
):
    client = api_client.as_user(owner)
    for n in range(5):
        client.post("/api/v1/agents/", {**NEW, "slug": f"agent-{n}"}, format="json")
    with django_assert_max_num_queries(8):
        rows = client.get("/api/v1/agents/").json()["results"]
    assert all(row["pending_change"]["requested_by"] == "olivia" for row in rows)


# --- break-glass ----------------------------------------------------------------------------------


def test_the_single_identity_admin_approves_their_own_change_by_break_glass_command(admin, owner):
    make_agent(owner, slug="solo", ceiling=[], actor=admin)
    lifecycle.update_agent(agent=Agent.objects.get(slug="solo"), actor=admin, changes={"ceiling": ["github:read"]})

    call_command("approve_own_change", "solo", "--reason", "single admin on this install")

    assert Agent.objects.get(slug="solo").ceiling == ["github:read"]
    event = AuditEvent.objects.get(verb="agent.change_approved")
    assert event.after["break_glass"] is True and event.reason == "single admin on this install"
    assert event.actor == "ada"


def test_break_glass_is_refused_when_another_identity_admin_could_approve(admin, second_admin, owner):
    make_agent(owner, slug="solo", ceiling=[], actor=admin)
    lifecycle.update_agent(agent=Agent.objects.get(slug="solo"), actor=admin, changes={"ceiling": ["github:read"]})

    with pytest.raises(CommandError, match="alan"):
        call_command("approve_own_change", "solo", "--reason", "hurry")

    assert Agent.objects.get(slug="solo").ceiling == []


def test_break_glass_needs_a_reason(admin, owner):
    make_agent(owner, slug="solo", ceiling=[], actor=admin)
    lifecycle.update_agent(agent=Agent.objects.get(slug="solo"), actor=admin, changes={"ceiling": ["github:read"]})
    with pytest.raises(CommandError):
        call_command("approve_own_change", "solo", "--reason", " ")
