"""The SDK's gateway side against a live Mandate: decisions and the AuthZEN calls, and offline
verification of credentials that follows a signing-key rotation without fetching per token."""

from __future__ import annotations

import asyncio
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from mandate_sdk import AsyncGateway, Credentials, Evaluation, Gateway, InvalidCredential, JwksVerifier, MandateError

from accounts.services import create_api_token, set_gateway_audiences
from audit.services import Actor
from identities.keys import rotate_signing_key
from tasks.lifecycle import revoke_envelope
from tasks.models import TaskEnvelope
from tests.helpers.factories import make_agent, make_envelope, make_instance
from tests.helpers.oauth import approve

pytestmark = pytest.mark.django_db(transaction=True)

AUDIENCE = "https://tools.example.test"


@pytest.fixture(autouse=True)
def public_url(settings, live_server):
    """The live server is Mandate's public URL: the issuer verifiers discover."""
    settings.MANDATE_PUBLIC_URL = live_server.url


@pytest.fixture
def gateway_token(gateway):
    set_gateway_audiences(user=gateway, audiences=[AUDIENCE], actor=gateway)  # the service it guards
    return create_api_token(user=gateway, actor=gateway, name="gate").secret


@pytest.fixture
def agent_and_envelope(owner, admin):
    instance = make_instance(make_agent(owner))
    envelope = approve(
        make_envelope(instance, scopes=("github:write", "github:read"), max_actions=3, audiences=[AUDIENCE]), admin
    )
    return instance, envelope


def mint(live_server, agent_and_envelope, **options) -> str:
    instance, envelope = agent_and_envelope
    return Credentials(
        live_server.url,
        spiffe_id=instance.spiffe_id,
        key=instance.private_key,
        envelope=str(envelope.id),
        audience=AUDIENCE,
        **options,
    ).token()


def test_decide_and_evaluate_allow_inside_the_envelope_and_name_the_reason_outside(
    live_server, gateway_token, agent_and_envelope
):
    token = mint(live_server, agent_and_envelope)
    gate = Gateway(live_server.url, gateway_token)

    allowed = gate.decide(token, "github:write", "repo:acme/api")
    evaluated = gate.evaluate(token, "github:write", "repo:acme/api", context={"tool": "create_issue"})
    outside = gate.evaluate(token, "jira:read", "repo:acme/api")

    assert allowed.allow and allowed.reason == "ok" and allowed.remaining_actions == 2
    assert evaluated.allow and evaluated.remaining_actions == 1 and evaluated.decision_id
    assert not outside.allow and outside.reason == "scope_not_granted" and outside.detail
    assert TaskEnvelope.objects.get().actions_used == 2


def test_evaluate_many_keeps_order_and_stops_where_its_semantic_says(live_server, gateway_token, agent_and_envelope):
    token = mint(live_server, agent_and_envelope)
    gate = Gateway(live_server.url, gateway_token)

    answers = gate.evaluate_many(
        [Evaluation(resource="repo:acme/api"), Evaluation(resource="repo:other/x"), Evaluation(resource="repo:acme/b")],
        token=token,
        action="github:read",
        semantic="deny_on_first_deny",
    )

    assert [(a.allow, a.reason) for a in answers] == [(True, "ok"), (False, "resource_not_granted")]


def test_search_actions_lists_the_scopes_a_call_would_get_and_spends_nothing(
    live_server, gateway_token, agent_and_envelope
):
    token = mint(live_server, agent_and_envelope)

    assert sorted(Gateway(live_server.url, gateway_token).search_actions(token, "repo:acme/api")) == [
        "github:read",
        "github:write",
    ]
    assert Gateway(live_server.url, gateway_token).search_actions(token, "repo:other/api") == []
    assert TaskEnvelope.objects.get().actions_used == 0


def test_the_async_gateway_answers_the_same(live_server, gateway_token, agent_and_envelope, admin):
    token = mint(live_server, agent_and_envelope)
    revoke_envelope(envelope=TaskEnvelope.objects.get(), actor=admin, reason="done")

    async def scenario():
        gate = AsyncGateway(live_server.url, gateway_token)
        try:
            return await gate.evaluate(token, "github:write", "repo:acme/api"), await gate.search_actions(
                token, "repo:acme/api"
            )
        finally:
            await gate.aclose()

    decision, actions = asyncio.run(scenario())

    assert not decision.allow and decision.reason in {"token_revoked", "envelope_inactive"} and actions == []


def test_a_bad_api_token_is_raised(live_server, agent_and_envelope):
    token = mint(live_server, agent_and_envelope)

    with pytest.raises(MandateError) as refused:
        Gateway(live_server.url, "not-a-token").evaluate(token, "github:write", "repo:acme/api")

    assert refused.value.status == 401


# --- offline verification ----------------------------------------------------------------------


def test_offline_verification_checks_signature_issuer_and_audience(live_server, agent_and_envelope):
    instance, _ = agent_and_envelope
    token = mint(live_server, agent_and_envelope)

    claims = JwksVerifier(live_server.url, audience=AUDIENCE).verify(token)
    assert claims["sub"] == instance.spiffe_id

    with pytest.raises(InvalidCredential, match="another audience"):
        JwksVerifier(live_server.url, audience="https://elsewhere.example.test").verify(token)
    with pytest.raises(InvalidCredential, match="another issuer"):
        JwksVerifier(live_server.url, audience=AUDIENCE, issuer="https://not-mandate.example.test").verify(token)
    forged = jwt.encode(
        jwt.decode(token, options={"verify_signature": False}),
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": jwt.get_unverified_header(token)["kid"]},
    )
    with pytest.raises(InvalidCredential):
        JwksVerifier(live_server.url, audience=AUDIENCE).verify(forged)


def test_offline_verification_follows_a_key_rotation_and_throttles_unknown_kids(live_server, agent_and_envelope):
    before = mint(live_server, agent_and_envelope)
    verifier = JwksVerifier(live_server.url, audience=AUDIENCE, min_refetch_interval=0)
    verifier.verify(before)
    assert verifier.fetches == 1

    rotate_signing_key(actor=Actor.system("test"), immediately=True)
    after = mint(live_server, agent_and_envelope)
    assert jwt.get_unverified_header(after)["kid"] != jwt.get_unverified_header(before)["kid"]

    verifier.verify(after)  # unknown kid: fetched again
    verifier.verify(before)  # the retired key is still published while its tokens live
    assert verifier.fetches == 2

    throttled = JwksVerifier(live_server.url, audience=AUDIENCE, min_refetch_interval=3600)
    throttled.verify(after)
    made_up = jwt.encode({"sub": "x"}, ec.generate_private_key(ec.SECP256R1()), "ES256", {"kid": str(uuid.uuid4())})
    for _ in range(5):
        with pytest.raises(InvalidCredential, match="does not publish"):
            throttled.verify(made_up)
    assert throttled.fetches == 1
