"""Instance public keys: accept only public Ed25519 (OKP) or P-256 (EC) JWKs."""

from __future__ import annotations

import base64
import hashlib
import json

import jwt
from jwt.exceptions import InvalidKeyError, PyJWKError

from core.errors import ValidationFailed

# RFC 7638: the required members, per key type, that a thumbprint covers.
_REQUIRED = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y")}
_ALLOWED_CURVES = {"OKP": {"Ed25519"}, "EC": {"P-256"}}
_ALG_FOR = {("OKP", "Ed25519"): "EdDSA", ("EC", "P-256"): "ES256"}
_PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}
# Said in every refusal about the key itself, so the fix is in the error (README: "An instance key").
ACCEPTED = (
    "accepted: a public JWK of kty OKP with crv Ed25519, or kty EC with crv P-256, e.g. "
    '{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}'
)


def validate_public_jwk(value: object, *, field: str = "public_jwk") -> dict:
    """Return the canonical public JWK (required members only) or raise ``ValidationFailed``."""
    if not isinstance(value, dict):
        raise ValidationFailed(f"must be a JSON object (a JWK); {ACCEPTED}", field=field)
    if _PRIVATE_MEMBERS & set(value):
        raise ValidationFailed("contains private key material; send only the public key (never 'd')", field=field)
    kty = value.get("kty")
    if kty not in _REQUIRED:
        raise ValidationFailed(f"unsupported key type {str(kty)[:20]!r}; {ACCEPTED}", field=field)
    crv = value.get("crv")
    if crv not in _ALLOWED_CURVES[kty]:
        raise ValidationFailed(f"unsupported curve {str(crv)[:20]!r} for {kty}; {ACCEPTED}", field=field)
    for member in _REQUIRED[kty]:
        if not isinstance(value.get(member), str) or len(value[member]) > 200:
            raise ValidationFailed(f"member '{member}' is missing or malformed; {ACCEPTED}", field=field)
    canonical = {member: value[member] for member in _REQUIRED[kty]}
    try:
        jwt.PyJWK(canonical, algorithm=_ALG_FOR[(kty, crv)])
    except (InvalidKeyError, PyJWKError, ValueError, TypeError):
        raise ValidationFailed(
            f"is not a valid public key (x and y are the key's base64url coordinates); {ACCEPTED}", field=field
        ) from None
    return canonical


def algorithm_for(jwk: dict) -> str:
    return _ALG_FOR[(jwk["kty"], jwk["crv"])]


def thumbprint(jwk: dict) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url without padding)."""
    members = {member: jwk[member] for member in _REQUIRED[jwk["kty"]]}
    digest = hashlib.sha256(json.dumps(members, sort_keys=True, separators=(",", ":")).encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
