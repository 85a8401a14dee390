"""Minting and verifying credentials, the JWT-SVIDs Mandate issues. PyJWT does the JOSE work.

Header exactly ``alg`` (ES256), ``kid``, ``typ: JWT``; claims ``iss``, ``sub`` (the instance's
SPIFFE ID), one ``aud``, ``exp``, ``iat``, ``jti``, ``scope``, ``envelope`` and ``act`` when delegated.
The JWT is never stored: its Credential row keeps jti, times, scopes and status.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from django.conf import settings
from django.utils import timezone

from core import sql as prepared
from core.oauth_errors import (
    TokenRejected,
)
from identities.keys import ALGORITHM, active_signing_key, verification_key
from identities.models import Credential, Instance
from identities.validators import is_spiffe_id

LEEWAY_SECONDS = 30


def issuer() -> str:
    """The ``iss`` of every credential and the ``issuer`` of the OpenID discovery document: the
    public URL, so that clouds federating with Mandate find ``/.well-known/openid-configuration``
    under it (in development, where ``make run`` serves)."""
    return settings.MANDATE_PUBLIC_URL or settings.MANDATE_DEVELOPMENT_URL


@dataclass(frozen=True)
class MintedToken:
    token: str
    credential: Credential
    expires_in: int


def act_claim(chain: list[str]) -> dict | None:
    """Nested ``act`` (RFC 8693 §4.1) from a list of delegating SPIFFE IDs, nearest first."""
    claim = None
    for sub in reversed(chain):
        claim = {"sub": sub, **({"act": claim} if claim else {})}
    return claim


def mint_credential(
    *,
    instance: Instance,
    envelope,
    scopes: list[str],
    audience: str,
    expires_at: datetime,
    parent: Credential | None = None,
    act_chain: list[str] | None = None,
    now: datetime | None = None,
) -> MintedToken:
    """Sign a token and save its Credential row (in the caller's transaction). The caller has
    already decided that the instance may have it and computed ``expires_at``."""
    now = (now or timezone.now()).replace(microsecond=0)
    expires_at = expires_at.replace(microsecond=0)
    key = active_signing_key()
    jti = secrets.token_urlsafe(18)
    claims = {
        "iss": issuer(),
        "sub": instance.spiffe_id,
        "aud": audience,
        "exp": int(expires_at.timestamp()),
        "iat": int(now.timestamp()),
        "jti": jti,
        "scope": " ".join(scopes),
        "envelope": str(envelope.id),
    }
    act = act_claim(act_chain or [])
    if act:
        claims["act"] = act
    token = jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": "JWT"})
    credential = Credential(
        jti=jti,
        instance=instance,
        envelope=envelope,
        scopes=list(scopes),
        audience=audience,
        issued_at=now,
        expires_at=expires_at,
        kid=key.kid,
        parent=parent,
        act_chain=list(act_chain or []),
    )
    prepared.insert(credential)  # save(force_insert=True) without the per-call query compilation
    return MintedToken(token, credential, max(int((expires_at - now).total_seconds()), 0))


@dataclass(frozen=True)
class VerifiedToken:
    claims: dict
    jti: str
    sub: str
    envelope_id: str
    scopes: tuple[str, ...]
    expires_at: datetime


def verify_access_token(token: object, *, audience: str | None = None, leeway: int = 0) -> VerifiedToken:
    """Check signature (one of our published keys, ES256 only), header shape and time claims.

    Revocation is not checked here: the caller looks up the Credential by ``jti``.
    """
    if not isinstance(token, str) or not token or len(token) > 8192:
        raise TokenRejected("token_invalid", "no token, or not a compact JWS")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenRejected("token_invalid", "not a compact JWS") from None
    if header.get("alg") != ALGORITHM or set(header) != {"alg", "kid", "typ"} or header.get("typ") != "JWT":
        raise TokenRejected("token_invalid", "unexpected token header")
    kid = header.get("kid")
    public = verification_key(kid) if isinstance(kid, str) and len(kid) <= 64 else None
    if public is None:
        raise TokenRejected("token_invalid", "not signed by a key of this deployment")
    options = {"require": ["exp", "iat", "jti", "sub", "aud", "iss"], "verify_aud": audience is not None}
    try:
        claims = jwt.decode(
            token, public, algorithms=[ALGORITHM], audience=audience, issuer=issuer(), options=options, leeway=leeway
        )
    except jwt.ExpiredSignatureError:
        raise TokenRejected("token_expired", "the token has expired") from None
    except jwt.PyJWTError:
        raise TokenRejected("token_invalid", "signature or claims do not verify") from None
    sub, jti, envelope_id = claims.get("sub"), claims.get("jti"), claims.get("envelope")
    if not (is_spiffe_id(sub) and isinstance(jti, str) and isinstance(envelope_id, str)):
        raise TokenRejected("token_invalid", "claims are malformed")
    scope = claims.get("scope", "")
    return VerifiedToken(
        claims=claims,
        jti=jti,
        sub=sub,
        envelope_id=envelope_id,
        scopes=tuple(scope.split()) if isinstance(scope, str) else (),
        expires_at=datetime.fromtimestamp(claims["exp"], tz=UTC),
    )


def credential_ttl(
    *, requested: int | None, policy_max: int, envelope_expires_at: datetime, now: datetime | None = None
) -> timedelta:
    """TTL = min(requested or default, policy ceiling, time left in the envelope)."""
    now = now or timezone.now()
    wanted = requested if requested else settings.MANDATE_CREDENTIAL_DEFAULT_TTL
    left = (envelope_expires_at - now).total_seconds()
    return timedelta(seconds=max(min(wanted, policy_max, settings.MANDATE_CREDENTIAL_MAX_TTL, int(left)), 0))
