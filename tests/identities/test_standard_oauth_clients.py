"""A standard OAuth client works with its defaults: Authlib's ``OAuth2Session`` with its own
``PrivateKeyJWT`` signer (client assertions valid for an hour, as Google's and others' clients sign
them) mints, introspects and revokes over real HTTP. Only ``alg`` is set, to match the instance's key."""

from __future__ import annotations

from urllib.parse import parse_qs

import jwt
import pytest
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from cryptography.hazmat.primitives import serialization
from joserfc.jwk import ECKey, OKPKey

from accounts.models import ApiToken
from identities import services as identity_services
from identities.models import Credential
from tests.helpers.factories import make_agent, make_envelope, new_ed25519_key, new_p256_key
from tests.helpers.oauth import approve

pytestmark = pytest.mark.django_db(transaction=True)

KEYS = {"EdDSA": (new_ed25519_key, OKPKey), "ES256": (new_p256_key, ECKey)}


def pem(private_key) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def bearer_for(user) -> dict:
    secret = ApiToken.new_secret()
    ApiToken.objects.create(user=user, name="gateway", prefix=secret[:8], digest=ApiToken.digest_of(secret))
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture(params=sorted(KEYS))
def agent_session(request, live_server, owner, admin):
    """An instance with a key of each type, its approved envelope, and an Authlib session that
    signs client assertions with that key using Authlib's defaults except ``alg``."""
    alg = request.param
    new_key, key_class = KEYS[alg]
    private, jwk = new_key()
    instance = identity_services.register_instance(agent=make_agent(owner), actor=owner, public_jwk=jwk, label="w")
    envelope = approve(make_envelope(instance), admin)
    session = OAuth2Session(
        client_id=instance.spiffe_id,
        # Authlib takes a key object (joserfc's) for anything but RSA, read here from the PEM file's bytes.
        client_secret=key_class.import_key(pem(private)),
        token_endpoint_auth_method=PrivateKeyJWT(alg=alg),
    )
    with session:
        yield session, instance, envelope


def test_authlib_mints_introspects_and_revokes_with_its_default_assertions(agent_session, live_server, gateway):
    session, instance, envelope = agent_session
    sent = []
    session.hooks["response"].append(lambda response, *args, **kwargs: sent.append(response.request))

    token = session.fetch_token(
        f"{live_server.url}/oauth/token", grant_type="client_credentials", envelope=str(envelope.id)
    )

    # Authlib signed its assertion the way it always does: valid for an hour.
    assertion = parse_qs(sent[0].body)["client_assertion"][0]
    claims = jwt.decode(assertion, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600
    assert token["token_type"] == "Bearer" and token["envelope"] == str(envelope.id)
    credential = Credential.objects.get()
    assert credential.instance_id == instance.id

    introspected = session.introspect_token(
        f"{live_server.url}/oauth/introspect", token=token["access_token"], headers=bearer_for(gateway)
    ).json()
    assert introspected["active"] is True
    assert introspected["client_id"] == instance.spiffe_id == introspected["sub"]

    revoked = session.revoke_token(f"{live_server.url}/oauth/revoke", token=token["access_token"])
    assert revoked.status_code == 200
    credential.refresh_from_db()
    assert credential.status == Credential.Status.REVOKED
    after = session.introspect_token(
        f"{live_server.url}/oauth/introspect", token=token["access_token"], headers=bearer_for(gateway)
    ).json()
    assert after == {"active": False}


def test_authlib_cannot_mint_twice_with_one_assertion(agent_session, live_server):
    session, _, envelope = agent_session
    sent = []
    session.hooks["response"].append(lambda response, *args, **kwargs: sent.append(response.request))
    session.fetch_token(f"{live_server.url}/oauth/token", grant_type="client_credentials", envelope=str(envelope.id))

    replayed = session.post(
        f"{live_server.url}/oauth/token",
        data=sent[0].body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        withhold_token=True,
    )

    assert replayed.status_code == 401 and replayed.json()["error"] == "invalid_client"
    assert "replayed" in replayed.json()["error_description"]
    assert Credential.objects.count() == 1
