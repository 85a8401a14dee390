"""A pause by an identity admin or by a policy rule is a lock only an identity admin lifts; an
owner's own pause stays theirs to lift (#14)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from accounts.roles import AGENT_OWNER
from audit import services as audit
from audit.models import AuditEvent
from core.errors import PermissionDenied
from identities.models import Agent, Instance, pause_of
from posture.selectors import flag_orphaned_agents
from tasks import lifecycle
from tests.helpers.factories import make_agent, make_instance

pytestmark = pytest.mark.django_db


def _resume(api_client, user, path):
    return api_client.as_user(user).post(path, {"reason": "back to work"}, format="json")


def test_an_owner_cannot_resume_an_agent_an_admin_paused_and_is_told_who_and_why(api_client, owner, admin):
    agent = make_agent(owner)
    api_client.as_user(admin).post(f"/api/v1/agents/{agent.slug}/pause", {"reason": "incident 42"}, format="json")

    response = _resume(api_client, owner, f"/api/v1/agents/{agent.slug}/resume")

    assert response.status_code == 403
    body = response.json()
    assert body["code"] == "pause_locked"
    assert "ada" in body["detail"] and "incident 42" in body["detail"]
    assert Agent.objects.get(pk=agent.pk).status == "paused"
    assert not AuditEvent.objects.filter(verb="agent.resumed").exists()


def test_the_agent_records_who_paused_it_why_and_that_it_is_locked(owner, admin):
    agent = make_agent(owner)
    lifecycle.pause_agent(agent=agent, actor=admin, reason="incident 42")

    agent = Agent.objects.get(pk=agent.pk)
    assert pause_of(agent) == {"by": "ada", "reason": "incident 42", "locked": True}
    assert AuditEvent.objects.get(verb="agent.paused").actor == "ada"


def test_an_identity_admin_lifts_the_lock_and_the_instances_paused_with_the_agent_follow(api_client, owner, admin):
    agent = make_agent(owner)
    instance = make_instance(agent)
    lifecycle.pause_agent(agent=agent, actor=admin, reason="incident 42")

    response = _resume(api_client, admin, f"/api/v1/agents/{agent.slug}/resume")

    assert response.status_code == 200
    assert pause_of(Agent.objects.get(pk=agent.pk)) is None
    assert Instance.objects.get(pk=instance.pk).status == "active"


def test_an_owner_lifts_their_own_pause(api_client, owner):
    agent = make_agent(owner)
    instance = make_instance(agent)
    lifecycle.pause_agent(agent=agent, actor=owner, reason="maintenance")
    assert pause_of(Agent.objects.get(pk=agent.pk)) == {"by": "olivia", "reason": "maintenance", "locked": False}

    assert _resume(api_client, owner, f"/api/v1/agents/{agent.slug}/resume").status_code == 200
    assert Instance.objects.get(pk=instance.pk).status == "active"


def test_an_admin_pausing_an_agent_its_owner_paused_turns_the_pause_into_a_lock(api_client, owner, admin):
    agent = make_agent(owner)
    instance = make_instance(agent)
    lifecycle.pause_agent(agent=agent, actor=owner, reason="maintenance")
    lifecycle.pause_agent(agent=agent, actor=admin, reason="incident 42")

    assert _resume(api_client, owner, f"/api/v1/agents/{agent.slug}/resume").status_code == 403
    assert _resume(api_client, owner, f"/api/v1/instances/{instance.pk}/resume").status_code == 403
    assert AuditEvent.objects.filter(verb="agent.locked", reason="incident 42").exists()


def test_an_owner_cannot_resume_an_agent_the_orphaned_owner_policy_paused(api_client, owner, admin):
    agent = make_agent(owner)
    owner.groups.clear()  # the owner lost every role: the agent is orphaned and paused by policy
    flag_orphaned_agents()
    assert Agent.objects.get(pk=agent.pk).status == "paused"
    owner.groups.add(Group.objects.get(name=AGENT_OWNER))  # back, but the lock stays

    response = _resume(api_client, owner, f"/api/v1/agents/{agent.slug}/resume")

    assert response.status_code == 403
    assert "orphaned-owner" in response.json()["detail"]


def test_an_owner_cannot_resume_an_instance_an_admin_paused(api_client, owner, admin):
    agent = make_agent(owner)
    instance = make_instance(agent)
    api_client.as_user(admin).post(f"/api/v1/instances/{instance.pk}/pause", {"reason": "leaked key"}, format="json")

    response = _resume(api_client, owner, f"/api/v1/instances/{instance.pk}/resume")

    assert response.status_code == 403
    assert "ada" in response.json()["detail"] and "leaked key" in response.json()["detail"]
    assert response.json()["code"] == "pause_locked"
    assert _resume(api_client, admin, f"/api/v1/instances/{instance.pk}/resume").status_code == 200


def test_an_owner_cannot_resume_an_instance_a_policy_rule_paused(owner):
    agent = make_agent(owner)
    instance = make_instance(agent)
    lifecycle.pause_instance(
        instance=instance, actor=audit.Actor.of_policy("pause-stale-instances"), reason="stale session"
    )

    with pytest.raises(PermissionDenied, match="pause-stale-instances"):
        lifecycle.resume_instance(instance=Instance.objects.get(pk=instance.pk), actor=owner)


def test_an_owner_resumes_an_instance_they_paused(api_client, owner):
    instance = make_instance(make_agent(owner))
    lifecycle.pause_instance(instance=instance, actor=owner, reason="rotating")
    assert _resume(api_client, owner, f"/api/v1/instances/{instance.pk}/resume").status_code == 200


def test_an_instance_an_admin_paused_stays_paused_when_its_agent_resumes(owner, admin):
    agent = make_agent(owner)
    instance = make_instance(agent)
    lifecycle.pause_instance(instance=instance, actor=admin, reason="leaked key")
    lifecycle.pause_agent(agent=agent, actor=owner, reason="maintenance")
    lifecycle.resume_agent(agent=Agent.objects.get(pk=agent.pk), actor=owner)

    assert Instance.objects.get(pk=instance.pk).status == "paused"


def test_the_console_hides_resume_from_the_owner_and_says_who_locked_it(client, owner, admin):
    agent = make_agent(owner)
    lifecycle.pause_agent(agent=agent, actor=admin, reason="incident 42")
    client.force_login(owner)

    page = client.get(f"/agents/{agent.slug}/").content.decode()

    assert 'value="resume"' not in page
    assert "Paused by ada" in page and "incident 42" in page and "only an identity admin" in page

    response = client.post(f"/agents/{agent.slug}/resume", {"confirm": "resume", "reason": "x"})
    assert Agent.objects.get(pk=agent.pk).status == "paused"
    assert response.status_code in (302, 403, 200)
