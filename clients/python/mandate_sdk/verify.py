"""Offline verification of Mandate's credentials (JWT-SVIDs) against ``/.well-known/jwks.json``.

The key set is cached. A credential signed with a key the cache does not know (Mandate rotated its
signing key) makes the verifier fetch the set again, at most once per ``min_refetch_interval``
seconds, so a flood of tokens with made-up ``kid`` values cannot turn into a flood of fetches.

Offline verification proves the credential is genuine, unexpired, from this issuer and for this
audience. It cannot see a revocation made since it was minted: ask Mandate (``Gateway``) before
acting on it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt

ALGORITHMS = ["ES256"]  # what Mandate signs credentials with


class InvalidCredential(Exception):
    """The credential does not verify; ``str()`` says why (never the token itself)."""


class JwksVerifier:
    def __init__(
        self,
        base_url: str,
        *,
        audience: str | list[str],
        issuer: str | None = None,
        jwks_url: str | None = None,
        min_refetch_interval: float = 30.0,
        leeway: float = 30.0,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # Unset, both are read from the issuer's /.well-known/openid-configuration on first use.
        self.issuer, self.jwks_url = issuer, jwks_url
        self.audience = audience
        self._interval, self._leeway, self._clock = min_refetch_interval, leeway, clock
        self._client = client or httpx.Client(timeout=10.0)
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self.fetches = 0

    def _discover(self) -> tuple[str, str]:
        if self.issuer is None or self.jwks_url is None:
            response = self._client.get(self.base_url + "/.well-known/openid-configuration")
            response.raise_for_status()
            discovery = response.json()
            self.issuer = self.issuer or str(discovery["issuer"])
            self.jwks_url = self.jwks_url or str(discovery["jwks_uri"])
        return self.issuer, self.jwks_url

    def _fetch(self) -> None:
        _, jwks_url = self._discover()
        response = self._client.get(jwks_url)
        response.raise_for_status()
        keys: dict[str, jwt.PyJWK] = {}
        for jwk in response.json().get("keys", []):
            try:
                key = jwt.PyJWK(jwk)
            except jwt.PyJWTError:
                continue  # a key type this library cannot use: skip it, keep the others
            if key.key_id:
                keys[key.key_id] = key
        self._keys, self._fetched_at = keys, self._clock()
        self.fetches += 1

    def key_for(self, kid: str) -> jwt.PyJWK:
        key = self._keys.get(kid)
        if key is not None:
            return key
        with self._lock:
            key = self._keys.get(kid)
            if key is not None:
                return key
            due = self._fetched_at is None or self._clock() - self._fetched_at >= self._interval
            if due:
                try:
                    self._fetch()
                except (httpx.HTTPError, ValueError, KeyError) as failed:
                    raise InvalidCredential(f"cannot fetch the issuer's keys: {failed}") from None
            key = self._keys.get(kid)
        if key is None:
            raise InvalidCredential("signed with a key the issuer does not publish")
        return key

    def verify(self, token: str) -> dict[str, Any]:
        """The credential's claims, once its signature, ``iss``, ``aud``, ``exp`` and ``nbf`` check."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidCredential("not a JWT") from None
        if header.get("alg") not in ALGORITHMS:
            raise InvalidCredential(f"alg must be one of {', '.join(ALGORITHMS)}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidCredential("the header names no kid")
        key = self.key_for(kid)
        issuer = self.issuer
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidCredential("expired") from None
        except jwt.InvalidAudienceError:
            raise InvalidCredential("issued for another audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidCredential("issued by another issuer") from None
        except jwt.PyJWTError as rejected:
            raise InvalidCredential(str(rejected)) from None
        return claims
