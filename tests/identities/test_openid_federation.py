"""Cloud workload-identity federation: a verifier we did not write (joserfc) follows Mandate's
OpenID discovery document exactly as AWS STS or GCP would — issuer URL → discovery → JWKS →
signature, ``iss``, ``aud``, ``exp`` — and accepts a credential minted for the cloud's audience,
and nothing else."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

import pytest
from authlib.oidc.discovery import OpenIDProviderMetadata
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.errors import BadSignatureError, ExpiredTokenError, InvalidClaimError
from joserfc.jwk import ECKey, KeySet

from tests.helpers.factories import make_agent, make_envelope, make_instance
from tests.helpers.oauth import JWT_BEARER, approve, assertion_for

pytestmark = pytest.mark.django_db(transaction=True)

STS = "sts.amazonaws.com"


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def cloud_verifies(token: str, *, issuer_url: str, audience: str, now: int | None = None) -> dict:
    """What a cloud does with a web-identity token from an OIDC provider it was told to trust (by
    issuer URL only): fetch the discovery document under that URL, insist its ``issuer`` is that
    URL, fetch the JWKS it names, verify the signature with an algorithm it advertises, then the
    claims. Returns the claims or raises."""
    discovery = get_json(issuer_url + "/.well-known/openid-configuration")
    assert discovery["issuer"] == issuer_url
    keys = KeySet.import_key_set(get_json(discovery["jwks_uri"]))
    decoded = jwt.decode(token, keys, algorithms=discovery["id_token_signing_alg_values_supported"])
    jwt.JWTClaimsRegistry(
        now=now,
        leeway=0,
        iss={"essential": True, "value": discovery["issuer"]},
        aud={"essential": True, "value": audience},
        sub={"essential": True},
        exp={"essential": True},
    ).validate(decoded.claims)
    return decoded.claims


@pytest.fixture
def public_url(live_server, settings):
    """Mandate deployed at the URL clouds reach it by (here the test server's)."""
    settings.MANDATE_PUBLIC_URL = live_server.url
    return live_server.url


@pytest.fixture
def instance(owner):
    return make_instance(make_agent(owner))


def mint(public_url: str, instance, admin, *, audience: str) -> str:
    envelope = approve(make_envelope(instance, audiences=[audience]), admin)
    token_url = public_url + "/oauth/token"
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": JWT_BEARER,
        "client_assertion": assertion_for(instance, aud=token_url),
        "envelope": str(envelope.id),
        "audience": audience,
    }
    request = urllib.request.Request(
        token_url,
        data=urllib.parse.urlencode(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["access_token"]


def test_the_discovery_document_is_what_openid_connect_discovery_requires(public_url):
    document = get_json(public_url + "/.well-known/openid-configuration")

    assert document["issuer"] == public_url
    assert document["jwks_uri"] == public_url + "/.well-known/jwks.json"
    assert document["id_token_signing_alg_values_supported"] == ["ES256"]
    assert document["subject_types_supported"] == ["public"]
    assert document["response_types_supported"] == ["id_token"]
    # Authlib's own validation of the members a federating cloud reads (present, well formed). Its
    # id_token_signing_alg_values_supported check is left out: it insists on RS256 for OpenID
    # providers that sign ID tokens, while JWT-SVIDs are ES256 (which AWS STS, GCP and Azure accept).
    metadata = OpenIDProviderMetadata(document)
    for name in ("issuer", "jwks_uri", "response_types_supported", "subject_types_supported"):
        getattr(metadata, f"validate_{name}")()


def test_a_cloud_following_discovery_accepts_a_credential_minted_for_its_audience(public_url, instance, admin):
    token = mint(public_url, instance, admin, audience=STS)

    claims = cloud_verifies(token, issuer_url=public_url, audience=STS)

    assert claims["iss"] == public_url
    assert claims["sub"] == instance.spiffe_id
    assert claims["aud"] == STS


def test_a_cloud_refuses_a_credential_minted_for_another_audience(public_url, instance, admin):
    token = mint(public_url, instance, admin, audience="https://tools.example.test")

    with pytest.raises(InvalidClaimError):
        cloud_verifies(token, issuer_url=public_url, audience=STS)


def test_a_cloud_refuses_an_expired_credential(public_url, instance, admin):
    token = mint(public_url, instance, admin, audience=STS)

    with pytest.raises(ExpiredTokenError):
        cloud_verifies(token, issuer_url=public_url, audience=STS, now=int(time.time()) + 3600)


def test_a_cloud_refuses_a_token_signed_by_a_key_mandate_does_not_publish(public_url, instance, admin):
    token = mint(public_url, instance, admin, audience=STS)
    published = get_json(public_url + "/.well-known/jwks.json")["keys"][0]
    claims = jwt.decode(token, KeySet.import_key_set({"keys": [published]})).claims
    impostor = ECKey.import_key(ec.generate_private_key(ec.SECP256R1()), parameters={"kid": published["kid"]})
    forged = jwt.encode({"alg": "ES256", "kid": published["kid"], "typ": "JWT"}, claims, impostor)

    with pytest.raises(BadSignatureError):
        cloud_verifies(forged, issuer_url=public_url, audience=STS)


def test_the_issuer_is_the_development_url_when_no_public_url_is_set(client, settings):
    settings.MANDATE_PUBLIC_URL = ""

    document = client.get("/.well-known/openid-configuration").json()

    # Not the request's host (testserver): where `make run` serves, whatever Host a caller sends.
    assert document["issuer"] == settings.MANDATE_DEVELOPMENT_URL
    assert document["issuer"].startswith("http://127.0.0.1:")
    assert document["jwks_uri"] == settings.MANDATE_DEVELOPMENT_URL + "/.well-known/jwks.json"
