"""Instance keys: Ed25519 or P-256, stored as an unencrypted PKCS#8 PEM file readable by its owner
only, and the public JWK that registering the instance needs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
KeyType = Literal["ed25519", "p256"]


def generate_key(path: str | os.PathLike[str], *, key_type: KeyType = "ed25519") -> PrivateKey:
    """A new key written to ``path`` (which must not exist yet), created with mode 0600 so the
    private key is never readable by others, not even between creation and a chmod."""
    key: PrivateKey
    if key_type == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    elif key_type == "p256":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        raise ValueError("key_type is 'ed25519' or 'p256'")
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(Path(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(pem)
    return key


def load_key(path: str | os.PathLike[str]) -> PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise ValueError("an instance key is Ed25519 or P-256")


def algorithm_for(key: PrivateKey) -> str:
    """The JWS algorithm Mandate pins to the key's type."""
    return "EdDSA" if isinstance(key, ed25519.Ed25519PrivateKey) else "ES256"


def public_jwk(key: PrivateKey) -> dict[str, str]:
    """The public half as a JWK (``kty``, ``crv``, ``x``, and ``y`` for P-256): no private member."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        jwk = OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {name: jwk[name] for name in ("kty", "crv", "x", "y") if name in jwk}
