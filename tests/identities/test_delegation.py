"""Token exchange (RFC 8693): a live credential narrowed for another instance of the same agent."""

from __future__ import annotations

import jwt
import pytest

from identities.models import Credential
from tasks import lifecycle
from tests.helpers.factories import make_agent, make_envelope, make_instance, new_ed25519_key
from tests.helpers.oauth import (
    JWT_TYPE,
    TOKEN_EXCHANGE,
    approve,
    assertion_for,
    form_post,
    post_token,
    refused,
)

pytestmark = pytest.mark.django_db


def claims_of(token):
    return jwt.decode(token, options={"verify_signature": False})


@pytest.fixture
def delegating(agent, admin):
    """An instance holding a credential under an envelope that may delegate one level deep."""
    instance = make_instance(agent, label="lead")
    envelope = approve(
        make_envelope(instance, scopes=("github:read", "github:write"), may_delegate=True, delegation_depth=1), admin
    )
    return instance, envelope


@pytest.fixture
def subject_token(issue, delegating):
    instance, envelope = delegating
    response = issue(instance, envelope)
    assert response.status_code == 200, response.content
    return response.json()["access_token"]


@pytest.fixture
def helper(agent):
    return make_instance(agent, label="helper")


@pytest.fixture
def exchange(client):
    def _exchange(subject, receiver, **extra):
        form = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": subject,
            "subject_token_type": JWT_TYPE,
            "actor_token": assertion_for(receiver),
            "actor_token_type": JWT_TYPE,
        }
        form.update(extra)
        return post_token(client, {k: v for k, v in form.items() if v is not None})

    return _exchange


@pytest.fixture
def is_active(api_client, gateway):
    caller = api_client.as_user(gateway)
    return lambda token: form_post(caller, "/oauth/introspect", {"token": token}).json()["active"]


def test_a_credential_is_delegated_to_another_instance_of_the_agent(exchange, subject_token, helper, delegating):
    lead, envelope = delegating
    response = exchange(subject_token, helper, scope="github:read")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["issued_token_type"] == JWT_TYPE and body["token_type"] == "Bearer"
    claims, parent = claims_of(body["access_token"]), claims_of(subject_token)
    assert claims["sub"] == helper.spiffe_id and claims["act"] == {"sub": lead.spiffe_id}
    assert claims["scope"] == "github:read" and claims["exp"] <= parent["exp"]
    assert claims["envelope"] == str(envelope.id) and claims["aud"] == parent["aud"]
    child = Credential.objects.get(jti=claims["jti"])
    assert child.parent_id == parent["jti"] and child.instance_id == helper.id


def test_introspection_shows_the_act_claim(exchange, subject_token, helper, delegating, api_client, gateway):
    token = exchange(subject_token, helper).json()["access_token"]
    body = form_post(api_client.as_user(gateway), "/oauth/introspect", {"token": token}).json()
    assert body["active"] is True and body["act"] == {"sub": delegating[0].spiffe_id}


def test_a_delegated_credential_is_never_longer_than_its_parent(exchange, subject_token, helper):
    token = exchange(subject_token, helper, ttl="900").json()["access_token"]
    assert claims_of(token)["exp"] <= claims_of(subject_token)["exp"]


def test_without_a_scope_the_delegated_credential_keeps_the_parents(exchange, subject_token, helper):
    token = exchange(subject_token, helper).json()["access_token"]
    assert claims_of(token)["scope"] == claims_of(subject_token)["scope"]


def test_revoking_the_parent_revokes_the_delegated_credential(exchange, subject_token, helper, client, is_active):
    child = exchange(subject_token, helper).json()["access_token"]
    assert is_active(child) is True

    form_post(client, "/oauth/revoke", {"token": subject_token})

    assert is_active(subject_token) is False and is_active(child) is False


def test_pausing_the_delegating_instance_revokes_the_delegated_credential(
    exchange, subject_token, helper, delegating, owner, is_active
):
    child = exchange(subject_token, helper).json()["access_token"]
    lifecycle.pause_instance(instance=delegating[0], actor=owner)
    assert is_active(child) is False


def test_ending_the_envelope_revokes_the_delegated_credential(
    exchange, subject_token, helper, delegating, owner, is_active
):
    child = exchange(subject_token, helper).json()["access_token"]
    lifecycle.complete_envelope(envelope=delegating[1], actor=owner)
    assert is_active(child) is False


def test_a_scope_wider_than_the_parent_is_refused(issue, exchange, delegating, helper):
    lead, envelope = delegating
    narrow = issue(lead, envelope, scope="github:read").json()["access_token"]
    refused(exchange(narrow, helper, scope="github:read github:write"), "invalid_scope")


def test_another_audience_is_refused(exchange, subject_token, helper):
    refused(exchange(subject_token, helper, audience="https://elsewhere.example"), "invalid_request")


def test_delegation_is_refused_where_the_envelope_does_not_allow_it(issue, exchange, agent, admin, helper):
    lead = make_instance(agent, label="lead")
    envelope = approve(make_envelope(lead), admin)
    token = issue(lead, envelope).json()["access_token"]
    refused(exchange(token, helper), "invalid_grant")


def test_delegation_depth_is_enforced(exchange, subject_token, helper, agent):
    child = exchange(subject_token, helper).json()["access_token"]
    third = make_instance(agent, label="third")
    body = refused(exchange(child, third), "invalid_grant")
    assert "depth" in body["error_description"]


def test_a_deeper_envelope_nests_act(issue, exchange, agent, admin, second_admin):
    lead, second, third = (make_instance(agent, label=n) for n in ("a", "b", "c"))
    envelope = approve(make_envelope(lead, may_delegate=True, delegation_depth=2), admin)
    if envelope.state == "pending":  # deeper delegation may be high risk: a second admin approves
        envelope = approve(envelope, second_admin)
    first = issue(lead, envelope).json()["access_token"]
    middle = exchange(first, second).json()["access_token"]

    response = exchange(middle, third)

    assert response.status_code == 200, response.content
    claims = claims_of(response.json()["access_token"])
    assert claims["sub"] == third.spiffe_id
    assert claims["act"] == {"sub": second.spiffe_id, "act": {"sub": lead.spiffe_id}}


def test_delegation_to_another_agents_instance_is_refused(exchange, subject_token, other_owner):
    stranger = make_instance(make_agent(other_owner, slug="stranger"))
    refused(exchange(subject_token, stranger), "invalid_grant")


def test_delegation_to_the_same_instance_is_refused(exchange, subject_token, delegating):
    refused(exchange(subject_token, delegating[0]), "invalid_grant")


def test_a_paused_receiver_is_refused(exchange, subject_token, helper, owner):
    lifecycle.pause_instance(instance=helper, actor=owner)
    refused(exchange(subject_token, helper), "invalid_grant")


def test_a_revoked_subject_token_is_refused(exchange, subject_token, helper, client):
    form_post(client, "/oauth/revoke", {"token": subject_token})
    refused(exchange(subject_token, helper), "invalid_grant")


def test_a_forged_subject_token_is_refused(exchange, subject_token, helper):
    from cryptography.hazmat.primitives.asymmetric import ec

    forged = jwt.encode(
        claims_of(subject_token),
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": jwt.get_unverified_header(subject_token)["kid"], "typ": "JWT"},
    )
    refused(exchange(forged, helper), "invalid_grant")


def test_an_actor_token_signed_by_another_key_is_refused(exchange, subject_token, helper):
    stranger, _ = new_ed25519_key()
    refused(exchange(subject_token, helper, actor_token=assertion_for(helper, key=stranger)), "invalid_client")


def test_a_replayed_actor_token_is_refused(exchange, subject_token, helper):
    actor_token = assertion_for(helper)
    assert exchange(subject_token, helper, actor_token=actor_token).status_code == 200
    refused(exchange(subject_token, helper, actor_token=actor_token), "invalid_client")


@pytest.mark.parametrize("missing", ["subject_token", "actor_token", "subject_token_type", "actor_token_type"])
def test_a_token_exchange_missing_a_part_is_an_invalid_request(exchange, subject_token, helper, missing):
    refused(exchange(subject_token, helper, **{missing: None}), "invalid_request")


def test_a_gateway_allows_a_delegated_credential_inside_the_envelope_and_denies_it_once_the_parent_dies(
    exchange, subject_token, helper, delegating, api_client, gateway
):
    """End to end: token exchange at /oauth/token, then the decision endpoint, then the cascade."""
    _, envelope = delegating
    delegated = exchange(subject_token, helper, scope="github:read")
    assert delegated.status_code == 200, delegated.content
    token = delegated.json()["access_token"]
    gw = api_client.as_user(gateway)

    def decide(scope):
        response = gw.post(
            "/api/v1/decisions", {"token": token, "scope": scope, "resource": "repo:acme/api"}, format="json"
        )
        assert response.status_code == 200, response.content
        return response.json()

    allowed = decide("github:read")
    assert (allowed["allow"], allowed["reason"]) == (True, "ok")
    assert allowed["instance"] == str(helper.id) and allowed["envelope"] == str(envelope.id)
    # Narrower than its parent: the parent's write scope was not passed on.
    assert decide("github:write")["reason"] == "scope_not_granted"

    parent = Credential.objects.get(jti=claims_of(subject_token)["jti"])
    lifecycle.revoke_credentials(actor=None, reason="test", jtis=[parent.jti])
    assert decide("github:read")["reason"] == "token_revoked"
