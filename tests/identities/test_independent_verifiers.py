"""Our tokens verify with verifiers we did not write: PyJWT's PyJWKClient against the JWKS served
over real HTTP, and the ``spiffe`` package's JWT-SVID validation against our SPIFFE bundle."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from spiffe import JwtBundle, JwtSvid, TrustDomain

from identities import keys
from tests.helpers.factories import make_agent, make_envelope, make_instance
from tests.helpers.oauth import JWT_BEARER, approve, assertion_for

pytestmark = pytest.mark.django_db(transaction=True)


def http_post(url, form):
    data = urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def http_get(url) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


@pytest.fixture
def minted(live_server, owner, admin):
    """A credential obtained over HTTP from the live server, as an agent SDK would."""
    instance = make_instance(make_agent(owner))
    envelope = approve(make_envelope(instance, audiences=["https://tools.example.test"]), admin)
    token_url = f"{live_server.url}/oauth/token"
    body = http_post(
        token_url,
        {
            "grant_type": "client_credentials",
            "client_assertion_type": JWT_BEARER,
            "client_assertion": assertion_for(instance, aud=token_url),
            "envelope": str(envelope.id),
            "audience": "https://tools.example.test",
        },
    )
    return instance, body["access_token"]


def test_pyjwkclient_verifies_our_token_against_the_served_jwks(live_server, minted):
    instance, token = minted
    client = jwt.PyJWKClient(f"{live_server.url}/.well-known/jwks.json", cache_keys=False)

    signing_key = client.get_signing_key_from_jwt(token)
    claims = jwt.decode(token, signing_key.key, algorithms=["ES256"], audience="https://tools.example.test")

    assert claims["sub"] == instance.spiffe_id


def test_pyjwkclient_refuses_a_token_we_did_not_sign(live_server, minted):
    _, token = minted
    forged = jwt.encode(
        jwt.decode(token, options={"verify_signature": False}),
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": jwt.get_unverified_header(token)["kid"], "typ": "JWT"},
    )
    client = jwt.PyJWKClient(f"{live_server.url}/.well-known/jwks.json", cache_keys=False)

    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            forged,
            client.get_signing_key_from_jwt(forged).key,
            algorithms=["ES256"],
            audience="https://tools.example.test",
        )


def test_pyjwkclient_finds_the_new_key_after_an_immediate_rotation(live_server, minted):
    keys.rotate_signing_key(actor=None, immediately=True)
    keys._invalidate()
    _, old_token = minted
    client = jwt.PyJWKClient(f"{live_server.url}/.well-known/jwks.json", cache_keys=False)
    # The retiring key still verifies what it signed.
    assert jwt.decode(
        old_token,
        client.get_signing_key_from_jwt(old_token).key,
        algorithms=["ES256"],
        audience="https://tools.example.test",
    )


def bundle_from(live_server) -> JwtBundle:
    return JwtBundle.parse(TrustDomain("mandate.local"), http_get(f"{live_server.url}/.well-known/spiffe-bundle"))


def test_the_spiffe_library_validates_our_token_as_a_jwt_svid(live_server, minted):
    instance, token = minted

    svid = JwtSvid.parse_and_validate(token, bundle_from(live_server), {"https://tools.example.test"})

    assert str(svid.spiffe_id) == instance.spiffe_id
    assert svid.audience == {"https://tools.example.test"}


def test_the_spiffe_library_refuses_our_token_for_another_audience(live_server, minted):
    from spiffe.svid.errors import JwtSvidError

    _, token = minted
    with pytest.raises((JwtSvidError, Exception)) as err:
        JwtSvid.parse_and_validate(token, bundle_from(live_server), {"https://other.example.test"})
    assert "aud" in str(err.value).lower()


def test_the_spiffe_library_refuses_a_token_we_did_not_sign(live_server, minted):
    _, token = minted
    forged = jwt.encode(
        jwt.decode(token, options={"verify_signature": False}),
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": jwt.get_unverified_header(token)["kid"], "typ": "JWT"},
    )
    with pytest.raises(Exception, match=r"(?i)signature"):  # the library's own error type, whichever it is
        JwtSvid.parse_and_validate(forged, bundle_from(live_server), {"https://tools.example.test"})


def test_the_spiffe_bundle_carries_every_published_key(live_server, minted):
    new = keys.rotate_signing_key(actor=None)
    keys._invalidate()
    bundle = bundle_from(live_server)
    assert new.kid in bundle.jwt_authorities and len(bundle.jwt_authorities) == 2
