"""Fixtures for the credential endpoints: instances with keys, live envelopes, signed assertions."""

from __future__ import annotations

import time
import uuid
from urllib.parse import urlencode

import jwt
import pytest

from tasks import services as task_services
from tests.factories import make_agent, make_envelope, make_instance

TOKEN_URL = "http://testserver/oauth/token"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"


def assertion_for(instance, *, key=None, alg="EdDSA", aud=TOKEN_URL, lifetime=120, headers=None, **claims):
    """A client assertion as an agent SDK would sign it; ``claims`` override or (with None) drop."""
    now = int(time.time())
    body = {
        "iss": instance.spiffe_id,
        "sub": instance.spiffe_id,
        "aud": aud,
        "iat": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
    }
    for name, value in claims.items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    return jwt.encode(body, key if key is not None else instance.private_key, algorithm=alg, headers=headers)


def token_form(instance, envelope, **extra):
    form = {"grant_type": "client_credentials", "client_assertion_type": JWT_BEARER, "envelope": str(envelope.id)}
    form.update(extra)
    if "client_assertion" not in extra:
        form["client_assertion"] = assertion_for(instance)
    return {k: v for k, v in form.items() if v is not None}


def form_post(client, path, form, **headers):
    """POST as the OAuth RFCs ask: application/x-www-form-urlencoded."""
    return client.post(path, urlencode(form, doseq=True), content_type="application/x-www-form-urlencoded", **headers)


def post_token(client, form):
    return form_post(client, "/oauth/token", form)


def approve(envelope, admin):
    task_services.approve_envelope(envelope=envelope, actor=admin)
    envelope.refresh_from_db()
    return envelope


@pytest.fixture
def agent(owner):
    return make_agent(owner)


@pytest.fixture
def instance(agent):
    return make_instance(agent)


@pytest.fixture
def envelope(instance, admin):
    """An approved envelope (medium risk, so a person approved it) for ``instance``."""
    return approve(make_envelope(instance), admin)


@pytest.fixture
def issue(client):
    """``issue(instance, envelope, **form)`` → the token response (a Django test response)."""

    def _issue(instance, envelope, **extra):
        return post_token(client, token_form(instance, envelope, **extra))

    return _issue


@pytest.fixture
def access_token(issue, instance, envelope):
    response = issue(instance, envelope)
    assert response.status_code == 200, response.content
    return response.json()["access_token"]


def b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_token(header: dict, claims: dict, secret: bytes) -> str:
    """An HMAC-signed JWT built by hand: PyJWT itself refuses to use a public key as an HMAC secret,
    which is exactly the confusion an attacker would try on a careless verifier."""
    import hashlib
    import hmac
    import json

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def unsigned_token(claims: dict, header: dict | None = None) -> str:
    import json

    header = header or {"alg": "none", "typ": "JWT"}
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}."
