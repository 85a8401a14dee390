"""Audience is part of the authority: an envelope lists who its credentials may be for, approvers
see that list, and /oauth/token refuses any other audience with ``invalid_target``."""

from __future__ import annotations

import jwt
import pytest

from audit.models import AuditEvent
from identities.models import Credential
from tasks import lifecycle
from tasks.models import TaskEnvelope
from tests.helpers.factories import make_agent, make_envelope, make_instance
from tests.helpers.oauth import JWT_TYPE, TOKEN_EXCHANGE, approve, assertion_for, post_token, refused

pytestmark = pytest.mark.django_db

MCP = "https://mcp.example.test/mcp"
OTHER = "https://some-other-service.example"


def aud_of(response) -> str:
    assert response.status_code == 200, response.content
    return jwt.decode(response.json()["access_token"], options={"verify_signature": False})["aud"]


# --- minting ---------------------------------------------------------------------------------------


def test_a_mint_for_an_audience_the_envelope_does_not_list_is_an_invalid_target(issue, instance, envelope):
    assert envelope.audiences == ["mandate"]
    body = refused(issue(instance, envelope, audience=OTHER), "invalid_target")
    assert OTHER in body["error_description"] and "mandate" in body["error_description"]
    body = refused(issue(instance, envelope, resource=OTHER), "invalid_target")
    assert Credential.objects.count() == 0
    assert not AuditEvent.objects.filter(verb="credential.issued").exists()


def test_a_mint_for_a_listed_audience_is_issued(issue, instance, admin):
    envelope = approve(make_envelope(instance, audiences=["mandate", MCP]), admin)
    assert aud_of(issue(instance, envelope, resource=MCP)) == MCP
    assert aud_of(issue(instance, envelope, audience=MCP)) == MCP
    assert aud_of(issue(instance, envelope)) == "mandate"  # the default, when the envelope lists it


def test_without_an_audience_an_envelope_without_the_default_mints_for_its_first(issue, instance, admin):
    envelope = approve(make_envelope(instance, audiences=[MCP, OTHER]), admin)
    assert aud_of(issue(instance, envelope)) == MCP
    refused(issue(instance, envelope, audience="mandate"), "invalid_target")


def test_the_envelopes_list_is_for_one_deployments_default(issue, instance, admin, settings):
    settings.MANDATE_DEFAULT_AUDIENCE = "https://tools.example.test"
    envelope = approve(make_envelope(instance), admin)
    assert envelope.audiences == ["https://tools.example.test"]
    assert aud_of(issue(instance, envelope)) == "https://tools.example.test"


def test_token_exchange_refuses_an_audience_the_envelope_does_not_list(client, issue, agent, admin):
    lead = make_instance(agent, label="lead")
    envelope = approve(make_envelope(lead, may_delegate=True, delegation_depth=1, audiences=[MCP]), admin)
    subject = issue(lead, envelope).json()["access_token"]
    helper = make_instance(agent, label="helper")

    def exchange(**extra):
        form = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": subject,
            "subject_token_type": JWT_TYPE,
            "actor_token": assertion_for(helper),
            "actor_token_type": JWT_TYPE,
            **extra,
        }
        return post_token(client, form)

    refused(exchange(audience=OTHER), "invalid_request")  # as before: a delegated credential keeps its audience
    assert aud_of(exchange()) == MCP
    # A subject token whose audience the envelope no longer lists (minted before the envelope
    # listed its audiences) is not passed on either.
    TaskEnvelope.objects.filter(pk=envelope.pk).update(audiences=[OTHER])
    body = refused(exchange(), "invalid_target")
    assert MCP in body["error_description"]
    refused(exchange(resource=MCP), "invalid_target")


# --- requesting, showing, keeping ------------------------------------------------------------------


def _body(instance, **overrides):
    return {
        "instance": str(instance.id),
        "intent": "answer MCP tool calls",
        "scopes": ["github:write"],
        "resources": ["repo:acme/*"],
        "duration_seconds": 1800,
        "max_actions": 50,
        **overrides,
    }


def test_an_envelope_requested_without_audiences_is_for_the_default_only(api_client, owner, instance):
    response = api_client.as_user(owner).post("/api/v1/envelopes/", _body(instance), format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["audiences"] == ["mandate"]


def test_audiences_are_requested_shown_and_audited(api_client, owner, admin, instance):
    response = api_client.as_user(owner).post(
        "/api/v1/envelopes/", _body(instance, audiences=[MCP, "sts.amazonaws.com", MCP]), format="json"
    )
    assert response.status_code == 201, response.json()
    envelope_id = response.json()["id"]
    assert response.json()["audiences"] == [MCP, "sts.amazonaws.com"]
    seen = api_client.as_user(admin).get(f"/api/v1/envelopes/{envelope_id}/").json()
    assert seen["audiences"] == [MCP, "sts.amazonaws.com"]
    event = AuditEvent.objects.get(verb="envelope.requested", target_id=envelope_id)
    assert event.after["audiences"] == [MCP, "sts.amazonaws.com"]


@pytest.mark.parametrize(
    "audiences",
    [
        [],
        "https://mcp.example.test",
        ["http://mcp.example.test/mcp"],  # plain http off loopback
        ["https://mcp.example.test/mcp#frag"],
        ["https://user:pw@mcp.example.test/"],
        ["https:///no-host"],
        ["has space"],
        ["x" * 501],
        [7],
        [f"https://s{i}.example.test" for i in range(21)],
    ],
)
def test_malformed_audiences_are_a_clear_400(api_client, owner, instance, audiences):
    response = api_client.as_user(owner).post("/api/v1/envelopes/", _body(instance, audiences=audiences), format="json")
    assert response.status_code == 400, response.json()
    assert "audiences" in str(response.json())
    assert TaskEnvelope.objects.count() == 0


def test_plain_http_on_loopback_is_accepted_in_development(api_client, owner, instance, settings):
    settings.DEBUG = True
    response = api_client.as_user(owner).post(
        "/api/v1/envelopes/", _body(instance, audiences=["http://127.0.0.1:9000/mcp"]), format="json"
    )
    assert response.status_code == 201, response.json()
    settings.DEBUG = False
    response = api_client.as_user(owner).post(
        "/api/v1/envelopes/", _body(instance, audiences=["http://127.0.0.1:9000/mcp"]), format="json"
    )
    assert response.status_code == 400


def test_a_retask_keeps_the_audiences_unless_it_names_others(owner, admin):
    instance = make_instance(make_agent(owner))
    envelope = approve(make_envelope(instance, audiences=[MCP]), admin)
    terms = {
        "intent": "again",
        "scopes": ["github:write"],
        "resources": ["repo:acme/*"],
        "duration_seconds": 600,
        "max_actions": 5,
    }
    kept = lifecycle.retask_envelope(envelope=envelope, actor=owner, **terms)
    assert kept.audiences == [MCP]
    changed = lifecycle.retask_envelope(envelope=approve(kept, admin), actor=owner, audiences=[OTHER], **terms)
    assert changed.audiences == [OTHER]


def test_an_envelope_made_without_naming_audiences_gets_the_default(instance, owner):
    row = TaskEnvelope.objects.create(
        instance=instance,
        agent=instance.agent,
        requested_by=owner,
        intent="made before audiences existed",
        duration_seconds=60,
        max_actions=1,
    )
    row.refresh_from_db()
    assert row.audiences == ["mandate"]
