"""The lifecycle in the browser: each page calls the API's service, is scoped like the API,
CSRF-protected and audited."""

import json

import pytest
from django.test import Client

from audit.models import AuditEvent
from identities.models import Agent, Credential, Instance
from tests.helpers.console import approved, make_credential
from tests.helpers.factories import make_agent, make_envelope, make_instance, new_ed25519_key

pytestmark = pytest.mark.django_db


def test_an_owner_registers_an_agent_whose_ceiling_waits_for_an_admin(signed_in, owner):
    client = signed_in(owner)
    assert client.get("/register-agent/").status_code == 200
    response = client.post(
        "/register-agent/",
        {
            "slug": "ledger-bot",
            "name": "Ledger bot",
            "ceiling": "github:read, jira:read",
            "max_envelope_seconds": "1800",
        },
        follow=True,
    )
    agent = Agent.objects.get(slug="ledger-bot")
    assert agent.owner == owner and response.redirect_chain[-1][0] == "/agents/ledger-bot/"
    assert "waits for an identity admin" in response.content.decode()
    assert AuditEvent.objects.filter(verb="agent.created", target_id=str(agent.id)).exists()


def test_agent_registration_errors_speak_the_labels_and_owners_cannot_pick_another_owner(
    signed_in, owner, other_owner, auditor
):
    client = signed_in(owner)
    response = client.post("/register-agent/", {"slug": "Bad Slug", "name": "x", "max_envelope_seconds": "60"})
    page = response.content.decode()
    assert response.status_code == 400 and "<strong>Slug</strong>" in page and not Agent.objects.exists()
    client.post(
        "/register-agent/", {"slug": "mine", "name": "x", "max_envelope_seconds": "600", "owner": other_owner.username}
    )
    assert Agent.objects.get(slug="mine").owner == owner  # the owner field is an admin's only
    assert signed_in(auditor).get("/register-agent/").status_code == 403


def test_an_admin_registers_an_agent_for_another_owner(signed_in, admin, owner):
    signed_in(admin).post(
        "/register-agent/",
        {
            "slug": "theirs",
            "name": "x",
            "ceiling": "github:read",
            "max_envelope_seconds": "600",
            "owner": owner.username,
        },
    )
    assert Agent.objects.get(slug="theirs").owner == owner


def test_an_owner_registers_an_instance_from_a_pasted_jwk(signed_in, owner, other_owner):
    agent = make_agent(owner)
    _, jwk = new_ed25519_key()
    client = signed_in(owner)
    assert client.get(f"/agents/{agent.slug}/instances/new").status_code == 200
    response = client.post(f"/agents/{agent.slug}/instances/new", {"label": "w-7", "public_jwk": json.dumps(jwk)})
    assert response.status_code == 302
    instance = Instance.objects.get(label="w-7")
    assert instance.agent == agent and AuditEvent.objects.filter(verb="instance.registered").exists()
    bad = client.post(f"/agents/{agent.slug}/instances/new", {"label": "w-8", "public_jwk": "not json"})
    assert bad.status_code == 400 and "<strong>Public key (JWK)</strong>" in bad.content.decode()
    again = client.post(f"/agents/{agent.slug}/instances/new", {"label": "w-9", "public_jwk": json.dumps(jwk)})
    assert again.status_code == 400 and "every instance needs its own key" in again.content.decode()
    # Another owner's agent is not theirs to extend.
    assert signed_in(other_owner).get(f"/agents/{agent.slug}/instances/new").status_code == 404


def test_pause_resume_and_retire_one_instance(signed_in, owner, admin):
    instance = make_instance(make_agent(owner))
    live = make_credential(approved(make_envelope(instance), admin))
    client = signed_in(owner)
    url = f"/instances/{instance.id}/change"
    client.post(url, {"verb": "pause", "reason": "odd calls"})  # unconfirmed: nothing happens
    assert Instance.objects.get(pk=instance.pk).status == Instance.Status.ACTIVE
    client.post(url, {"verb": "pause", "reason": "odd calls", "confirm": "yes"})
    assert Instance.objects.get(pk=instance.pk).status == Instance.Status.PAUSED
    assert Credential.objects.get(pk=live.pk).status == Credential.Status.REVOKED
    client.post(url, {"verb": "resume", "reason": "checked", "confirm": "yes"})
    assert Instance.objects.get(pk=instance.pk).status == Instance.Status.ACTIVE
    client.post(url, {"verb": "retire", "reason": "done", "confirm": "yes"})
    assert Instance.objects.get(pk=instance.pk).status == Instance.Status.RETIRED
    verbs = set(AuditEvent.objects.filter(target_id=str(instance.id)).values_list("verb", flat=True))
    assert {"instance.paused", "instance.resumed", "instance.retired"} <= verbs


def test_instance_changes_are_scoped_and_csrf_protected(signed_in, owner, other_owner, auditor):
    instance = make_instance(make_agent(owner))
    url = f"/instances/{instance.id}/change"
    data = {"verb": "pause", "reason": "x", "confirm": "yes"}
    assert signed_in(other_owner).post(url, data).status_code == 404
    assert signed_in(auditor).post(url, data).status_code == 403
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(owner)
    assert strict.post(url, data).status_code == 403
    assert Instance.objects.get(pk=instance.pk).status == Instance.Status.ACTIVE


def test_revoking_one_credential_from_the_agent_page(signed_in, owner, other_owner, admin):
    instance = make_instance(make_agent(owner))
    envelope = approved(make_envelope(instance), admin)
    one, other = make_credential(envelope), make_credential(envelope)
    page = signed_in(owner).get(f"/agents/{instance.agent.slug}/").content.decode()
    assert f"/credentials/{one.jti}/revoke" in page
    assert signed_in(other_owner).post(f"/credentials/{one.jti}/revoke").status_code == 404
    signed_in(owner).post(f"/credentials/{one.jti}/revoke", {"next": "https://evil.example/"})
    assert Credential.objects.get(pk=one.pk).status == Credential.Status.REVOKED
    assert Credential.objects.get(pk=other.pk).status == Credential.Status.ACTIVE
    assert AuditEvent.objects.filter(verb="credential.revoked", target_id=one.jti).exists()


def test_the_agent_page_with_its_actions_keeps_its_query_count(signed_in, owner, admin, django_assert_max_num_queries):
    agent = make_agent(owner)
    for n in range(5):
        envelope = approved(make_envelope(make_instance(agent, label=f"w{n}")), admin)
        make_credential(envelope)
    client = signed_in(owner)
    with django_assert_max_num_queries(20):
        assert client.get(f"/agents/{agent.slug}/").status_code == 200
