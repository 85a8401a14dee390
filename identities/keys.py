"""Signing keys: ES256 by default, private halves encrypted at rest with MultiFernet.

Lifecycle: ``published`` (in the JWKS, not signing yet, so verifiers fetch it first) → ``active``
(signs) → ``retiring`` (published, no longer signs) → ``retired`` (gone from the JWKS once every
token it signed has expired). Loaded key objects are cached per process: parsing a PEM on every
call would halve the signing rate.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from jwt.algorithms import ECAlgorithm

from audit import services as audit
from audit.services import ActorLike
from core.errors import InvalidTransition
from identities.models import SigningKey

ALGORITHM = "ES256"
# How long verifiers may cache our key set; a new key is published at least this long before it signs.
REFRESH_HINT_SECONDS = 300
# How long a process trusts its cached idea of which key signs.
_ACTIVE_KEY_CACHE_SECONDS = 5.0


@lru_cache(maxsize=1)
def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in settings.MANDATE_KEY_ENCRYPTION_KEYS])


def encrypt_private_key(pem: bytes) -> bytes:
    return _fernet().encrypt(pem)


def decrypt_private_key(blob: bytes, *, ttl: int | None = None) -> bytes:
    """``ttl``: refuse (``InvalidToken``) a blob sealed more than that many seconds ago."""
    return _fernet().decrypt(bytes(blob), ttl=ttl)


def _kid_for(public_jwk: dict) -> str:
    members = f'{{"crv":"{public_jwk["crv"]}","kty":"EC","x":"{public_jwk["x"]}","y":"{public_jwk["y"]}"}}'
    return base64.urlsafe_b64encode(hashlib.sha256(members.encode()).digest()).rstrip(b"=").decode()[:32]


def _new_key_row(status: str) -> SigningKey:
    private = ec.generate_private_key(ec.SECP256R1())
    public_jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    kid = _kid_for(public_jwk)
    public_jwk.update({"kid": kid, "alg": ALGORITHM, "use": "sig"})
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    now = timezone.now()
    return SigningKey(
        kid=kid,
        alg=ALGORITHM,
        status=status,
        public_jwk=public_jwk,
        private_key_encrypted=encrypt_private_key(pem),
        created_at=now,
        activated_at=now if status == SigningKey.Status.ACTIVE else None,
    )


# --- transitions ---------------------------------------------------------------------------------


def publish_new_key(*, actor: ActorLike, verb: str = "key.published", extra: dict | None = None) -> SigningKey:
    """Publish a key that will start signing after the refresh hint (see ``activate_due_keys``)."""
    with transaction.atomic():
        key = _new_key_row(SigningKey.Status.PUBLISHED)
        key.save(force_insert=True)
        audit.record(verb, actor=actor, target=key, after={"status": key.status, "alg": key.alg, **(extra or {})})
    _invalidate()
    return key


def activate_key(*, key: SigningKey, actor: ActorLike, now: datetime | None = None) -> SigningKey:
    """Make ``key`` the signing key; the previous active key starts retiring."""
    now = now or timezone.now()
    with transaction.atomic():
        key = SigningKey.objects.select_for_update().get(pk=key.pk)
        if key.status == SigningKey.Status.ACTIVE:
            return key
        if key.status != SigningKey.Status.PUBLISHED:
            raise InvalidTransition(f"key {key.kid} is {key.status}; only a published key can start signing")
        for old in SigningKey.objects.select_for_update().filter(status=SigningKey.Status.ACTIVE):
            old.status, old.retiring_at = SigningKey.Status.RETIRING, now
            old.save(update_fields=["status", "retiring_at"])
            audit.record(
                "key.retiring", actor=actor, target=old, before={"status": "active"}, after={"status": "retiring"}
            )
        key.status, key.activated_at = SigningKey.Status.ACTIVE, now
        key.save(update_fields=["status", "activated_at"])
        audit.record(
            "key.activated", actor=actor, target=key, before={"status": "published"}, after={"status": "active"}
        )
    _invalidate()
    return key


def rotate_signing_key(*, actor: ActorLike, immediately: bool = False, now: datetime | None = None) -> SigningKey:
    """Publish a new key (audited ``key.rotated``); it signs once verifiers had a refresh hint to
    fetch it (``activate_due_keys``), or at once when ``immediately`` or when no key signs yet.

    ``immediately`` is for a compromised key: verifiers that cached the old set refuse new tokens
    until they refetch (they do so on an unknown ``kid``). Returns the new key.
    """
    now = now or timezone.now()
    has_active = SigningKey.objects.filter(status=SigningKey.Status.ACTIVE).exists()
    at_once = immediately or not has_active
    signs_from = now if at_once else now + timedelta(seconds=REFRESH_HINT_SECONDS)
    key = publish_new_key(actor=actor, verb="key.rotated", extra={"immediately": at_once, "signs_from": signs_from})
    if at_once:
        key = activate_key(key=key, actor=actor, now=now)
    return key


def activate_due_keys(*, actor: ActorLike, now: datetime | None = None) -> int:
    """Promote the newest published key that has been public for a refresh hint. Returns 0 or 1."""
    now = now or timezone.now()
    due = (
        SigningKey.objects.filter(
            status=SigningKey.Status.PUBLISHED, created_at__lte=now - timedelta(seconds=REFRESH_HINT_SECONDS)
        )
        .order_by("-created_at")
        .first()
    )
    if due is None:
        return 0
    activate_key(key=due, actor=actor, now=now)
    return 1


def retire_drained_keys(*, actor: ActorLike, now: datetime | None = None) -> int:
    """Retire retiring keys once every token they signed has expired (retiring_at + longest TTL)."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.MANDATE_CREDENTIAL_MAX_TTL + 60)
    retired = 0
    for kid in SigningKey.objects.filter(status=SigningKey.Status.RETIRING, retiring_at__lte=cutoff).values_list(
        "kid", flat=True
    ):
        with transaction.atomic():
            changed = SigningKey.objects.filter(kid=kid, status=SigningKey.Status.RETIRING).update(
                status=SigningKey.Status.RETIRED, retired_at=now
            )
            if changed:
                audit.record(
                    "key.retired",
                    actor=actor,
                    target=("signing_key", kid, kid),
                    before={"status": "retiring"},
                    after={"status": "retired"},
                )
                retired += 1
    if retired:
        _invalidate()
    return retired


# --- reads on the hot path -----------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedKey:
    kid: str
    private_key: ec.EllipticCurvePrivateKey


_lock = threading.Lock()
_state = {"active": None, "loaded_at": 0.0, "public": None, "public_at": 0.0, "generation": 0}


def _invalidate() -> None:
    with _lock:
        _state.update(active=None, loaded_at=0.0, public=None, public_at=0.0, key_set=None, key_set_at=0.0)
        _state["generation"] += 1


@lru_cache(maxsize=16)
def _load_private(kid: str, blob: bytes) -> ec.EllipticCurvePrivateKey:
    return serialization.load_pem_private_key(decrypt_private_key(blob), password=None)


def active_signing_key() -> LoadedKey:
    """The key that signs now, from a per-process cache refreshed every few seconds. Bootstraps the
    first key when none exists."""
    now = time.monotonic()
    cached = _state["active"]
    if cached is not None and now - _state["loaded_at"] < _ACTIVE_KEY_CACHE_SECONDS:
        return cached
    row = SigningKey.objects.filter(status=SigningKey.Status.ACTIVE).order_by("-activated_at").first()
    if row is None:
        row = rotate_signing_key(actor=audit.Actor.system("key-bootstrap"), immediately=True)
    loaded = LoadedKey(row.kid, _load_private(row.kid, bytes(row.private_key_encrypted)))
    with _lock:
        _state["active"], _state["loaded_at"] = loaded, now
    return loaded


@lru_cache(maxsize=64)
def _load_public(kid: str, x: str, y: str):
    return ECAlgorithm.from_jwk({"kty": "EC", "crv": "P-256", "x": x, "y": y})


# An unknown kid refreshes the published set at most this often, so a flood of made-up kids
# cannot turn every request into a database query.
_MISS_REFRESH_SECONDS = 1.0


def published_keys() -> list[SigningKey]:
    return list(SigningKey.objects.filter(status__in=SigningKey.PUBLISHED_STATES).order_by("created_at"))


def verification_key(kid: str):
    """The public key object for ``kid`` if it is one of ours and still published, else None."""
    now = time.monotonic()
    public = _state["public"]
    age = now - _state["public_at"]
    stale = public is None or age >= _ACTIVE_KEY_CACHE_SECONDS
    if stale or (kid not in public and age >= _MISS_REFRESH_SECONDS):
        rows = SigningKey.objects.filter(status__in=SigningKey.PUBLISHED_STATES).values_list("kid", "public_jwk")
        public = {k: jwk for k, jwk in rows}
        with _lock:
            _state["public"], _state["public_at"] = public, now
    jwk = public.get(kid)
    if jwk is None:
        return None
    return _load_public(kid, jwk["x"], jwk["y"])


def _public_members(key: SigningKey) -> dict:
    # Built from an allow-list, never by copying the stored JWK: no private member can slip out.
    jwk = key.public_jwk
    return {"kty": "EC", "crv": "P-256", "x": jwk["x"], "y": jwk["y"], "kid": key.kid}


def public_jwks() -> list[dict]:
    """The RFC 7517 view: public halves only, each with ``alg`` and ``use: "sig"``."""
    return [{**_public_members(key), "alg": key.alg, "use": "sig"} for key in published_keys()]


@dataclass(frozen=True)
class KeySet:
    jwks: list[dict]
    spiffe_keys: list[dict]
    sequence: int


def key_set() -> KeySet:
    """The published keys for the discovery documents, cached per process for a few seconds.

    ``sequence`` is the latest key state change in microseconds since the epoch: it rises whenever a
    key is published, starts or stops signing, or is retired, on every process alike.
    """
    now = time.monotonic()
    cached = _state.get("key_set")
    if cached is not None and now - _state.get("key_set_at", 0.0) < _ACTIVE_KEY_CACHE_SECONDS:
        return cached
    keys = published_keys()
    latest = SigningKey.objects.aggregate(
        created=Max("created_at"), activated=Max("activated_at"), retiring=Max("retiring_at"), retired=Max("retired_at")
    )
    stamps = [v for v in latest.values() if v is not None]
    sequence = int(max(stamps).timestamp() * 1_000_000) if stamps else 0
    result = KeySet(
        jwks=[{**_public_members(k), "alg": k.alg, "use": "sig"} for k in keys],
        spiffe_keys=[{**_public_members(k), "use": "jwt-svid"} for k in keys],
        sequence=sequence,
    )
    with _lock:
        _state["key_set"], _state["key_set_at"] = result, now
    return result
