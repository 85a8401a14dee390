"""The audit trail's two secrets: the HMAC key ring that keys every row, and the Ed25519 keys that
sign checkpoints.

- **HMAC key ring** (``MANDATE_AUDIT_KEY`` or ``MANDATE_AUDIT_KEY_FILE``: secrets separated by
  commas or new lines, newest first). The newest keys new rows; every key in the ring verifies the
  rows it keyed, so rotation is "put the new secret first, keep the old ones". A key's id is derived
  from the secret (never the secret itself) and stored per row. The key is never in the database:
  someone holding only the database cannot recompute a row's MAC.
- **Checkpoint signing keys** (``AuditSigningKey``): Ed25519, the private half encrypted at rest
  with ``MANDATE_KEY_ENCRYPTION_KEYS`` like the credential signing keys. Auditors verify checkpoints
  with the public halves only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# --- HMAC key ring ---------------------------------------------------------------------------------


def key_id_of(secret: bytes) -> str:
    """A stable, public name for a secret: 16 hex digits of a domain-separated digest."""
    return hashlib.sha256(b"mandate-audit-key-id\n" + secret).hexdigest()[:16]


@dataclass(frozen=True)
class KeyRing:
    current_id: str
    keys: dict[str, bytes]

    def mac(self, row_hash: str, key_id: str | None = None) -> str:
        """HMAC-SHA256 of a row's hash under ``key_id`` (the current key by default)."""
        return hmac.new(self.keys[key_id or self.current_id], row_hash.encode(), hashlib.sha256).hexdigest()

    def check(self, row_hash: str, key_id: str, mac: str) -> str | None:
        """None when ``mac`` holds, else what is wrong (an unknown key, or a MAC that does not match)."""
        if not key_id or not mac:
            return "row carries no MAC (written without the audit key)"
        if key_id not in self.keys:
            return f"row was keyed with audit key {key_id}, which is not in MANDATE_AUDIT_KEY"
        if not hmac.compare_digest(self.mac(row_hash, key_id), mac):
            return "MAC does not match: the row was rewritten without the audit key"
        return None


def parse_keys(text: str) -> list[bytes]:
    return [part.strip().encode() for part in text.replace("\n", ",").split(",") if part.strip()]


@lru_cache(maxsize=1)
def key_ring() -> KeyRing:
    secrets = list(settings.MANDATE_AUDIT_KEYS)
    if not secrets:
        raise ImproperlyConfigured("no audit key: set MANDATE_AUDIT_KEY or MANDATE_AUDIT_KEY_FILE")
    keys: dict[str, bytes] = {}
    for secret in secrets:
        raw = secret.encode() if isinstance(secret, str) else bytes(secret)
        if len(raw) < 32:
            raise ImproperlyConfigured("each audit key must be at least 32 characters")
        keys.setdefault(key_id_of(raw), raw)
    first = secrets[0]
    return KeyRing(current_id=key_id_of(first.encode() if isinstance(first, str) else bytes(first)), keys=keys)


# --- checkpoint signing keys -----------------------------------------------------------------------


@lru_cache(maxsize=1)
def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in settings.MANDATE_KEY_ENCRYPTION_KEYS])


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_signing_key_fields() -> dict:
    """The columns of a fresh ``AuditSigningKey`` (the private half already encrypted)."""
    private = Ed25519PrivateKey.generate()
    public_raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {
        "kid": "audit-" + hashlib.sha256(public_raw).hexdigest()[:16],
        "public_key": b64u(public_raw),
        "private_key_encrypted": _fernet().encrypt(pem),
    }


def private_key_of(row) -> Ed25519PrivateKey:
    """Decrypt a key's private half; refuses one whose private half does not belong to its public
    half (a row planted by someone without the encryption key cannot pass this)."""
    try:
        pem = _fernet().decrypt(bytes(row.private_key_encrypted))
    except InvalidToken:
        raise ValueError(f"audit signing key {row.kid} does not decrypt with MANDATE_KEY_ENCRYPTION_KEYS") from None
    private = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise ValueError(f"audit signing key {row.kid} is not Ed25519")
    public_raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if b64u(public_raw) != row.public_key:
        raise ValueError(f"audit signing key {row.kid}: private and public halves do not match")
    return private


def public_jwk(row) -> dict:
    """The public half as an OKP JWK (RFC 8037)."""
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": row.public_key,
        "kid": row.kid,
        "alg": "EdDSA",
        "use": "sig",
        "status": row.status,
        "created_at": row.created_at.isoformat(),
    }


def trusted_public_keys(rows) -> dict[str, Ed25519PublicKey]:
    """The server's own keys, trusted only when their private halves decrypt and match: the
    database alone cannot add a key the server would believe."""
    trusted = {}
    for row in rows:
        try:
            trusted[row.kid] = private_key_of(row).public_key()
        except ValueError:
            continue
    return trusted
