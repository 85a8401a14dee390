"""RFC 8707 resource indicators at /oauth/token: ``resource`` names the credential's audience, as MCP
clients ask for a token for one MCP server; it never silently disagrees with ``audience``."""

from __future__ import annotations

import jwt
import pytest

from identities.models import Credential
from tests.helpers.factories import make_envelope, make_instance
from tests.helpers.oauth import JWT_TYPE, TOKEN_EXCHANGE, approve, assertion_for, post_token, refused

pytestmark = pytest.mark.django_db

MCP_SERVER = "https://mcp.example.test/mcp"


@pytest.fixture
def envelope(instance, admin):
    """An approved envelope whose credentials may be for the MCP server (and the default)."""
    return approve(make_envelope(instance, audiences=["mandate", MCP_SERVER, "https://other.example.test"]), admin)


def aud_of(response) -> str:
    assert response.status_code == 200, response.content
    return jwt.decode(response.json()["access_token"], options={"verify_signature": False})["aud"]


def test_the_resource_becomes_the_credentials_audience(issue, instance, envelope):
    assert aud_of(issue(instance, envelope, resource=MCP_SERVER)) == MCP_SERVER
    assert Credential.objects.get().audience == MCP_SERVER


def test_resource_and_audience_naming_the_same_audience_are_accepted(issue, instance, envelope):
    assert aud_of(issue(instance, envelope, resource=MCP_SERVER, audience=MCP_SERVER)) == MCP_SERVER


def test_resource_and_a_different_audience_are_refused(issue, instance, envelope):
    body = refused(
        issue(instance, envelope, resource=MCP_SERVER, audience="https://other.example.test"), "invalid_request"
    )
    assert "resource" in body["error_description"] and "audience" in body["error_description"]
    assert Credential.objects.count() == 0


def test_resource_sent_twice_is_refused(issue, instance, envelope):
    body = refused(issue(instance, envelope, resource=[MCP_SERVER, "https://other.example.test"]), "invalid_request")
    assert "resource" in body["error_description"]
    assert Credential.objects.count() == 0


def test_the_same_resource_sent_twice_is_refused_too(issue, instance, envelope):
    refused(issue(instance, envelope, resource=[MCP_SERVER, MCP_SERVER]), "invalid_request")
    assert Credential.objects.count() == 0


@pytest.mark.parametrize(
    "resource",
    ["mcp.example.test", "/mcp", "https://mcp.example.test/mcp#tools", "https://mcp.example.test/a b", "x" * 501],
)
def test_a_resource_that_is_not_an_absolute_uri_without_fragment_is_an_invalid_target(
    issue, instance, envelope, resource
):
    body = refused_target(issue(instance, envelope, resource=resource))
    assert "resource" in body["error_description"]
    assert Credential.objects.count() == 0


def refused_target(response) -> dict:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"] == "invalid_target" and response["Cache-Control"] == "no-store"
    return body


def test_a_delegated_credential_keeps_its_subjects_audience_whatever_the_resource(client, issue, agent, admin):
    lead = make_instance(agent, label="lead")
    envelope = approve(
        make_envelope(
            lead, may_delegate=True, delegation_depth=1, audiences=[MCP_SERVER, "https://other.example.test"]
        ),
        admin,
    )
    subject = issue(lead, envelope, resource=MCP_SERVER).json()["access_token"]
    helper = make_instance(agent, label="helper")

    def exchange(resource):
        form = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": subject,
            "subject_token_type": JWT_TYPE,
            "actor_token": assertion_for(helper),
            "actor_token_type": JWT_TYPE,
            "resource": resource,
        }
        return post_token(client, form)

    refused(exchange("https://other.example.test"), "invalid_request")
    assert aud_of(exchange(MCP_SERVER)) == MCP_SERVER
