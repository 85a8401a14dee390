"""The approval queue's section for pending ceilings, and the agent page's pending change (#14)."""

from __future__ import annotations

import pytest

from identities.models import Agent
from tests.helpers.factories import make_agent

pytestmark = pytest.mark.django_db


def test_an_admin_sees_a_pending_ceiling_in_the_queue_and_approves_it_with_a_comment(client, owner, admin):
    make_agent(owner, slug="deployer", ceiling=["github:read", "deploy:production"], approved=False)
    client.force_login(admin)

    page = client.get("/approvals/").content.decode()
    assert "Pending ceilings" in page and "deployer" in page and "+ deploy:production" in page

    response = client.post("/approvals/ceilings/deployer/approve", {"comment": "release train"})

    assert response.status_code == 302
    assert Agent.objects.get(slug="deployer").ceiling == ["deploy:production", "github:read"]


def test_an_admin_denies_a_pending_ceiling_and_nothing_comes_into_force(client, owner, admin):
    make_agent(owner, slug="deployer", ceiling=["deploy:production"], approved=False)
    client.force_login(admin)
    client.post("/approvals/ceilings/deployer/deny", {"comment": "no"})
    assert Agent.objects.get(slug="deployer").ceiling == []
    assert "No ceiling waiting" in client.get("/approvals/").content.decode()


def test_the_requesting_admin_sees_why_they_cannot_approve_and_a_post_is_refused(client, owner, admin):
    make_agent(owner, slug="deployer", ceiling=["deploy:production"], actor=admin, approved=False)
    client.force_login(admin)

    page = client.get("/approvals/").content.decode()
    assert "other than the one who requested it" in page

    client.post("/approvals/ceilings/deployer/approve", {"comment": "mine"})
    assert Agent.objects.get(slug="deployer").ceiling == []


def test_owners_cannot_decide_ceilings_in_the_console(client, owner):
    make_agent(owner, slug="deployer", ceiling=["deploy:production"], approved=False)
    client.force_login(owner)
    response = client.post("/approvals/ceilings/deployer/approve", {"comment": "me"})
    assert response.status_code in (302, 403)
    assert Agent.objects.get(slug="deployer").ceiling == []


def test_the_agent_page_shows_the_change_waiting_for_approval(client, owner):
    make_agent(owner, slug="deployer", ceiling=["deploy:production"], approved=False)
    client.force_login(owner)
    page = client.get("/agents/deployer/").content.decode()
    assert "Waiting for approval" in page and "deploy:production" in page
