"""Refusals a newcomer meets first name the fix: the expected URL, the accepted keys, where a credential goes."""

from __future__ import annotations

import pytest

from tests.helpers.oauth import assertion_for

pytestmark = pytest.mark.django_db


def test_a_wrong_audience_names_the_token_endpoint_url_to_use(issue, instance, envelope):
    response = issue(
        instance, envelope, client_assertion=assertion_for(instance, aud="http://127.0.0.1:9999/oauth/token")
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.json()["error_description"].endswith(": http://testserver/oauth/token")


@pytest.mark.parametrize(
    "jwk",
    [
        {"kty": "OKP", "crv": "Ed25519", "x": "<base64url public key>"},
        {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
        {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"},
        {"kty": "OKP", "crv": "Ed25519"},
        "not a jwk",
    ],
)
def test_an_invalid_public_key_names_the_accepted_types_and_curves_with_an_example(api_client, owner, agent, jwk):
    response = api_client.as_user(owner).post(
        f"/api/v1/agents/{agent.slug}/instances/", {"public_jwk": jwk, "label": "w"}, format="json"
    )
    assert response.status_code == 400
    [message] = response.json()["public_jwk"]
    assert "kty OKP with crv Ed25519, or kty EC with crv P-256" in message
    assert '{"kty": "OKP", "crv": "Ed25519", "x": "' in message


def test_the_example_in_the_message_is_itself_accepted(api_client, owner, agent):
    import json

    from identities.jwk import ACCEPTED

    example = json.loads(ACCEPTED[ACCEPTED.index("{") :])
    response = api_client.as_user(owner).post(
        f"/api/v1/agents/{agent.slug}/instances/", {"public_jwk": example, "label": "w"}, format="json"
    )
    assert response.status_code == 201, response.content


@pytest.mark.parametrize("path", ["/api/v1/agents/", "/api/v1/envelopes/", "/api/v1/decisions", "/api/v1/decisions/"])
def test_an_agent_credential_on_a_rest_endpoint_says_what_it_is_and_where_it_goes(client, access_token, path):
    method = client.post if "decisions" in path else client.get
    response = method(path, {}, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {access_token}")
    assert response.status_code == 401
    detail = response.json()["detail"]
    assert "this is an agent credential" in detail
    assert "/api/v1/events" in detail and "/oauth/token" in detail


def test_a_bearer_value_that_is_neither_kind_of_token_is_refused(client):
    response = client.get("/api/v1/agents/", HTTP_AUTHORIZATION="Bearer something-else")
    assert response.status_code == 401
    assert "mdt_" in response.json()["detail"]


def test_decisions_answer_with_and_without_the_trailing_slash(api_client, gateway, access_token):
    as_gateway = api_client.as_user(gateway)
    body = {"token": access_token, "scope": "github:write", "resource": "repo:acme/app"}
    first = as_gateway.post("/api/v1/decisions", body, format="json")
    second = as_gateway.post("/api/v1/decisions/", body, format="json")
    assert first.status_code == second.status_code == 200
    assert first.json()["reason"] == second.json()["reason"]


def test_events_accept_a_batch_and_list_the_record_with_and_without_the_trailing_slash(
    client, api_client, admin, access_token
):
    batch = {"events": [{"kind": "tool_call", "scope": "github:write", "resource": "repo:acme/app"}]}
    for path in ("/api/v1/events", "/api/v1/events/"):
        response = client.post(
            path, batch, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {access_token}"
        )
        assert response.status_code == 202, (path, response.content)
    as_admin = api_client.as_user(admin)
    listed = [as_admin.get(path) for path in ("/api/v1/events", "/api/v1/events/")]
    assert [r.status_code for r in listed] == [200, 200]
    assert len(listed[0].json()["results"]) == len(listed[1].json()["results"]) >= 2


def test_the_schema_documents_both_methods_on_both_spellings_of_events(api_client, admin):
    """The server answers both methods on both spellings (and says so in Allow): so does the schema,
    the contract's spelling first and the other marked as the same operation."""
    paths = api_client.as_user(admin).get("/api/schema/?format=json").json()["paths"]
    assert set(paths["/api/v1/events"]) == set(paths["/api/v1/events/"]) == {"get", "post"}
    assert paths["/api/v1/events"]["get"]["operationId"].endswith("_alias")
    assert paths["/api/v1/events/"]["post"]["operationId"].endswith("_alias")
    assert "post" in paths["/api/v1/decisions"]
    assert "/api/v1/decisions/" not in paths
