"""Talking to the OAuth endpoints as a client would: signed client assertions, token requests,
form posts, hand-built JWTs for the attacks, and the one check of an OAuth refusal."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from urllib.parse import urlencode

import jwt
from django.db import connection
from django.test import Client

from tasks import services as task_services

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


def mint_in_parallel(forms, *, threads: int = 4, meanwhile: Callable[[], object] | None = None) -> list[int]:
    """POST every form to /oauth/token from ``threads`` threads released together, each with its own
    database connection (real parallel transactions on PostgreSQL); ``meanwhile`` runs in this thread
    once they are released. The statuses, in no particular order."""
    statuses: list[int] = []
    released = threading.Barrier(threads + 1)

    def mint(batch):
        client = Client()
        released.wait()
        try:
            for form in batch:
                statuses.append(post_token(client, form).status_code)
        finally:
            connection.close()

    workers = [threading.Thread(target=mint, args=(forms[i::threads],)) for i in range(threads)]
    for worker in workers:
        worker.start()
    released.wait()
    if meanwhile is not None:
        meanwhile()
    for worker in workers:
        worker.join()
    return statuses


def approve(envelope, admin):
    task_services.approve_envelope(envelope=envelope, actor=admin)
    envelope.refresh_from_db()
    return envelope


def refused(response, error: str) -> dict:
    """An RFC 6749 error response: 401 for ``invalid_client``, 400 otherwise, the given error code
    with a description, and never cached. Returns the body."""
    assert response.status_code == (401 if error == "invalid_client" else 400), response.content
    body = response.json()
    assert body["error"] == error and body["error_description"]
    assert response["Cache-Control"] == "no-store"
    return body


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
