"""Client assertions (RFC 7523 ``private_key_jwt``): an instance proves it holds its registered key.

The assertion names the instance twice (``iss`` = ``sub`` = its SPIFFE ID), is addressed to our
token endpoint (``aud``), was signed within the last minute (``iat``), lives at most an hour after
``iat`` (``exp``: what standard clients such as Authlib's and Google's sign, and what Okta accepts)
and is used once: its ``jti`` is kept in ``UsedAssertion`` until the assertion expires, and the
primary key makes check-and-insert a single atomic statement shared by every web process. The fresh
``iat`` is what bounds how long a stolen assertion is useful; the long ``exp`` only spares clients
from choosing one.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import jwt
from django.conf import settings
from django.utils import timezone

from core import sql
from core.oauth_errors import (
    AssertionRejected,
)
from identities.jwk import algorithm_for
from identities.models import Instance, UsedAssertion
from identities.validators import parse_spiffe_id

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# exp may be at most this long after iat (advertised as token_endpoint_auth_max_assertion_lifetime).
MAX_LIFETIME_SECONDS = 3600
# iat may be at most this old when the assertion arrives (token_endpoint_auth_max_assertion_age).
MAX_AGE_SECONDS = 60
# Clock skew allowed on every time check.
LEEWAY_SECONDS = 30
MAX_ASSERTION_CHARS = 8192
_ALLOWED_HEADER = {"alg", "kid", "typ"}
_JWT = jwt.PyJWT()
_ALGORITHMS = {name: jwt.get_algorithm_by_name(name) for name in ("EdDSA", "ES256")}


@dataclass(frozen=True)
class ClientKey:
    """What the token endpoint needs about an instance to check its signature. Immutable facts
    only (status is read under lock when a credential is minted), so it is cached per process."""

    instance_id: uuid.UUID
    agent_slug: str
    alg: str
    key: object


@dataclass(frozen=True)
class VerifiedAssertion:
    client: ClientKey
    spiffe_id: str
    jti: str
    replay_key: str
    expires_at: datetime


@lru_cache(maxsize=4096)
def _parse_key(alg: str, kty: str, crv: str, x: str, y: str | None):
    members = {"kty": kty, "crv": crv, "x": x, **({"y": y} if y else {})}
    return jwt.PyJWK(members, algorithm=alg).key


_client_keys: dict[uuid.UUID, ClientKey] = {}
_CLIENT_KEY_CACHE_SIZE = 4096


def client_key(instance_id: uuid.UUID) -> ClientKey | None:
    """The instance's registered public key, loaded once per process (keys never change)."""
    cached = _client_keys.get(instance_id)
    if cached is not None:
        return cached
    row = Instance.objects.filter(pk=instance_id).values_list("agent__slug", "public_jwk").first()
    if row is None or not row[1]:
        return None
    slug, jwk = row
    alg = algorithm_for(jwk)
    loaded = ClientKey(instance_id, slug, alg, _parse_key(alg, jwk["kty"], jwk["crv"], jwk["x"], jwk.get("y")))
    if len(_client_keys) >= _CLIENT_KEY_CACHE_SIZE:
        _client_keys.clear()
    _client_keys[instance_id] = loaded
    return loaded


def _instance_from_spiffe_id(value: object) -> tuple[uuid.UUID, str] | None:
    parsed = parse_spiffe_id(value)
    if parsed is None:
        return None
    domain, segments = parsed
    if domain != settings.MANDATE_TRUST_DOMAIN or len(segments) != 4:
        return None
    if segments[0] != "agent" or segments[2] != "instance":
        return None
    try:
        instance_id = uuid.UUID(segments[3])
    except ValueError:
        return None
    if str(instance_id) != segments[3]:  # one spelling only: lower-case, hyphenated
        return None
    return instance_id, segments[1]


def verify_client_assertion(assertion: object, *, audience: str, now: float | None = None) -> VerifiedAssertion:
    """Check the assertion's shape, signature (algorithm pinned to the registered key's type) and
    claims. Does not consume it: the caller does, in the transaction that uses it."""
    if not isinstance(assertion, str) or not assertion or len(assertion) > MAX_ASSERTION_CHARS:
        raise AssertionRejected("client_assertion is missing or too long")
    # Parsed once by PyJWT; the signature is then checked by PyJWT's algorithm for the key's type
    # over the same bytes (parsing the compact JWS three times cost more than the signature).
    try:
        parsed = _JWT.decode_complete(assertion, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError, TypeError):
        raise AssertionRejected("client_assertion is not a compact JWS") from None
    header, claims = parsed["header"], parsed["payload"]
    if not set(header) <= _ALLOWED_HEADER or header.get("typ", "JWT") != "JWT":
        raise AssertionRejected("client_assertion header may hold only alg, kid and typ: JWT")
    iss, sub = claims.get("iss"), claims.get("sub")
    if not isinstance(iss, str) or iss != sub:
        raise AssertionRejected("iss and sub must both be the instance's SPIFFE ID")
    named = _instance_from_spiffe_id(iss)
    if named is None:
        raise AssertionRejected("iss is not an instance SPIFFE ID of this trust domain")
    instance_id, slug = named
    client = client_key(instance_id)
    if client is None or client.agent_slug != slug:
        raise AssertionRejected("no instance with this SPIFFE ID and a registered key")
    if header.get("alg") != client.alg:
        raise AssertionRejected(f"the instance's key signs with {client.alg}")
    signing_input = assertion.rpartition(".")[0].encode()
    try:
        valid = _ALGORITHMS[client.alg].verify(signing_input, client.key, parsed["signature"])
    except Exception:  # a malformed signature for the key type
        valid = False
    if not valid:
        raise AssertionRejected("signature does not verify with the instance's registered key")
    missing = [name for name in ("aud", "exp", "iat", "jti") if name not in claims]
    if missing:
        raise AssertionRejected(f"missing claim(s): {', '.join(missing)}")
    now = time.time() if now is None else now
    # RFC 7523 allows a list; it must still name this endpoint and nothing else.
    if claims["aud"] != audience and claims["aud"] != [audience]:
        raise AssertionRejected(f"aud must be exactly this token endpoint's URL: {audience}")
    exp, iat, nbf, jti = claims["exp"], claims["iat"], claims.get("nbf"), claims["jti"]
    for value in (exp, iat, nbf):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise AssertionRejected("exp, iat and nbf must be whole seconds")
    if exp <= now - LEEWAY_SECONDS:
        raise AssertionRejected("the assertion has expired")
    if iat > now + LEEWAY_SECONDS:
        raise AssertionRejected("iat is in the future")
    if iat < now - MAX_AGE_SECONDS - LEEWAY_SECONDS:
        raise AssertionRejected(f"iat is more than {MAX_AGE_SECONDS} s old; sign a fresh assertion for each request")
    if exp <= iat or exp > iat + MAX_LIFETIME_SECONDS:
        raise AssertionRejected(f"exp must be after iat and at most {MAX_LIFETIME_SECONDS} s after it")
    if nbf is not None and nbf > now + LEEWAY_SECONDS:
        raise AssertionRejected("the assertion is not valid yet")
    if not isinstance(jti, str) or not 1 <= len(jti) <= 255:
        raise AssertionRejected("jti must be a string of 1 to 255 characters")
    replay_key = hashlib.sha256(f"{iss}\n{jti}".encode()).hexdigest()
    # Kept a leeway beyond exp: until then a replay would still pass the time checks.
    expires_at = datetime.fromtimestamp(exp + LEEWAY_SECONDS, tz=UTC)
    return VerifiedAssertion(client=client, spiffe_id=iss, jti=jti, replay_key=replay_key, expires_at=expires_at)


def consume_assertion(assertion: VerifiedAssertion) -> bool:
    """Record the assertion as used. True the first time, False on a replay, from any process.

    One statement (``ON CONFLICT DO NOTHING``, no exception), so it needs no savepoint and can run
    inside the minting transaction on PostgreSQL and SQLite alike.
    """
    return sql.insert_unless_present(
        UsedAssertion, {"key": assertion.replay_key, "expires_at": assertion.expires_at}, key="key"
    )


def purge_used_assertions(now: datetime | None = None) -> int:
    """Delete replay records whose assertion has expired (safe to run anywhere, any time)."""
    deleted, _ = UsedAssertion.objects.filter(expires_at__lt=now or timezone.now()).delete()
    return deleted


_PURGE_EVERY_SECONDS = 60.0
_last_purge = {"at": time.monotonic()}


def maybe_purge_used_assertions() -> None:
    # Opportunistic: at most once a minute per process, so the table stays small without a sweep.
    now = time.monotonic()
    if now - _last_purge["at"] >= _PURGE_EVERY_SECONDS:
        _last_purge["at"] = now
        purge_used_assertions(timezone.now() - timedelta(seconds=1))
