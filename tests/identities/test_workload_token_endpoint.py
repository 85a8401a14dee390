"""A workload with no Mandate-registered key, registered over REST with a token from a trusted
issuer, gets a credential at /oauth/token for a fresh token from that issuer (RFC 7523 with the
external issuer's signature). Every refusal there is RFC 6749's ``invalid_client``."""

from __future__ import annotations

from urllib.parse import urlencode

import jwt
import pytest

from identities import oidc
from identities.models import Instance
from tasks import services as task_services
from tests.helpers.factories import make_agent, make_envelope
from tests.helpers.oauth import refused
from tests.helpers.oidc import LocalIssuer, new_signing_key

pytestmark = pytest.mark.django_db

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture
def local_issuer():
    issuer = LocalIssuer("RS256")
    yield issuer
    issuer.close()


@pytest.fixture
def agent(owner):
    return make_agent(owner)


@pytest.fixture
def trusted(admin, agent, local_issuer):
    return oidc.create_issuer(
        actor=admin,
        name="cluster",
        issuer=local_issuer.url,
        audience="mandate",
        rules=[{"agent": agent.slug, "claims": {"sub": "system:serviceaccount:billing:*"}}],
    )


@pytest.fixture
def registered(api_client, owner, agent, trusted, local_issuer):
    response = api_client.as_user(owner).post(
        f"/api/v1/agents/{agent.slug}/instances/",
        {"workload_token": local_issuer.token(), "label": "pod-a"},
        format="json",
    )
    assert response.status_code == 201, response.content
    return Instance.objects.get(pk=response.json()["id"])


@pytest.fixture
def envelope(registered, admin):
    envelope = make_envelope(registered)
    task_services.approve_envelope(envelope=envelope, actor=admin)
    return envelope


def token_request(client, assertion, envelope, **extra):
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": JWT_BEARER,
        "client_assertion": assertion,
        "envelope": str(envelope.id),
        **extra,
    }
    return client.post("/oauth/token", urlencode(form), content_type="application/x-www-form-urlencoded")


# --- credentials at /oauth/token ----------------------------------------------------------------------


def test_a_fresh_workload_token_gets_a_credential_without_any_registered_key(
    client, registered, envelope, local_issuer
):
    response = token_request(client, local_issuer.token(), envelope)
    assert response.status_code == 200, response.content
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["sub"] == registered.spiffe_id and claims["envelope"] == str(envelope.id)


def test_client_id_may_name_the_instance_by_its_spiffe_id(client, registered, envelope, local_issuer):
    response = token_request(client, local_issuer.token(), envelope, client_id=registered.spiffe_id)
    assert response.status_code == 200, response.content


def test_a_replayed_workload_token_is_refused(client, registered, envelope, local_issuer):
    token = local_issuer.token()
    assert token_request(client, token, envelope).status_code == 200
    assert "replayed" in refused(token_request(client, token, envelope), "invalid_client")["error_description"]


@pytest.mark.parametrize("case", ["wrong_audience", "expired", "wrong_rule", "unknown_kid", "untrusted_issuer"])
def test_every_bad_workload_token_is_invalid_client(client, registered, envelope, local_issuer, case):
    if case == "untrusted_issuer":
        stranger = LocalIssuer("RS256")
        token = stranger.token()
        stranger.close()
    else:
        token = {
            "wrong_audience": lambda: local_issuer.token(aud="not-mandate"),
            "expired": lambda: local_issuer.token(iat_offset=-600, lifetime=300),
            "wrong_rule": lambda: local_issuer.token(sub="system:serviceaccount:payments:robot"),
            "unknown_kid": lambda: local_issuer.token(kid="unknown", private=new_signing_key("RS256"), alg="RS256"),
        }[case]()
    refused(token_request(client, token, envelope), "invalid_client")


def test_a_disabled_issuer_no_longer_gets_credentials(client, registered, envelope, local_issuer, trusted, admin):
    oidc.disable_issuer(issuer=trusted, actor=admin)
    refused(token_request(client, local_issuer.token(), envelope), "invalid_client")


def test_a_paused_attested_instance_gets_nothing(client, registered, envelope, local_issuer, owner):
    from tasks.lifecycle import pause_instance

    pause_instance(instance=registered, actor=owner)
    refused(token_request(client, local_issuer.token(), envelope), "invalid_client")


def test_unsigned_or_unverifiable_tokens_at_the_token_endpoint_never_fetch_keys(
    client, registered, envelope, local_issuer
):
    fetches = local_issuer.jwks_fetches
    claims = jwt.decode(local_issuer.token(), options={"verify_signature": False})
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": "made-up"})
    made_up = [
        local_issuer.token(kid=f"made-up-{n}", private=new_signing_key("RS256"), aud="someone-else") for n in range(5)
    ]
    for assertion in (unsigned, *made_up):
        refused(token_request(client, assertion, envelope), "invalid_client")
    assert local_issuer.jwks_fetches == fetches


def test_a_flood_of_unknown_kids_at_the_token_endpoint_fetches_at_most_once(client, registered, envelope, local_issuer):
    fetches = local_issuer.jwks_fetches
    for n in range(10):
        forged = local_issuer.token(kid=f"rotated-{n}", private=new_signing_key("RS256"))
        refused(token_request(client, forged, envelope), "invalid_client")
    assert local_issuer.jwks_fetches <= fetches + 1
