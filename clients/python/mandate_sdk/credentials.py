"""Short-lived credentials for one envelope: minted at ``/oauth/token`` with a fresh client assertion
each time (RFC 7523), cached, and minted again shortly before they expire.

Many threads may ask at once: the first to find the cache stale mints while the others wait for it,
so one refresh is one mint.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass

import httpx
import jwt

from mandate_sdk.keys import PrivateKey, algorithm_for

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# A client assertion is used once, right away; a minute is ample and well inside Mandate's limits.
ASSERTION_LIFETIME_SECONDS = 60


class MandateError(Exception):
    """Mandate refused: ``error`` is the OAuth error code, ``description`` says why."""

    def __init__(self, error: str, description: str, status: int):
        super().__init__(f"{error}: {description}")
        self.error, self.description, self.status = error, description, status


@dataclass(frozen=True)
class MintedCredential:
    access_token: str
    expires_at: float
    scope: str
    envelope: str


class Credentials:
    """The current credential of one instance under one envelope.

    ``refresh_margin`` seconds before expiry the next call mints a new one. ``clock`` is what that
    decision reads the time from (tests pass their own).
    """

    def __init__(
        self,
        base_url: str,
        *,
        spiffe_id: str,
        key: PrivateKey,
        envelope: str,
        scopes: list[str] | None = None,
        audience: str | None = None,
        refresh_margin: float = 30.0,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token_url = base_url.rstrip("/") + "/oauth/token"
        self.spiffe_id, self.envelope = spiffe_id, envelope
        self._key, self._alg = key, algorithm_for(key)
        self._scopes, self._audience = scopes, audience
        self._margin, self._clock = refresh_margin, clock
        self._client = client or httpx.Client(timeout=10.0)
        self._lock = threading.Lock()
        self._current: MintedCredential | None = None

    def client_assertion(self) -> str:
        # Wall time, whatever clock decides when to refresh: Mandate checks iat against its own.
        now = int(time.time())
        claims = {
            "iss": self.spiffe_id,
            "sub": self.spiffe_id,
            "aud": self.token_url,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECONDS,
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(claims, self._key, algorithm=self._alg)

    def _fresh(self) -> MintedCredential | None:
        current = self._current
        if current is not None and current.expires_at - self._margin > self._clock():
            return current
        return None

    def current(self) -> MintedCredential:
        """The cached credential while it has more than the margin left; otherwise a new one."""
        fresh = self._fresh()
        if fresh is not None:
            return fresh
        with self._lock:
            fresh = self._fresh()  # another thread may have minted while this one waited
            if fresh is None:
                fresh = self._current = self._mint()
            return fresh

    def token(self) -> str:
        return self.current().access_token

    def _mint(self) -> MintedCredential:
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": JWT_BEARER,
            "client_assertion": self.client_assertion(),
            "envelope": self.envelope,
        }
        if self._scopes is not None:
            form["scope"] = " ".join(self._scopes)
        if self._audience is not None:
            form["audience"] = self._audience
        started = self._clock()
        response = self._client.post(self.token_url, data=form)
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or "access_token" not in body:
            raise MandateError(
                str(body.get("error", "server_error")),
                str(body.get("error_description", f"HTTP {response.status_code}")),
                response.status_code,
            )
        return MintedCredential(
            access_token=body["access_token"],
            expires_at=started + int(body["expires_in"]),
            scope=body.get("scope", ""),
            envelope=body.get("envelope", self.envelope),
        )


class CredentialAuth(httpx.Auth):
    """Puts the instance's current credential on each outgoing request as a Bearer token."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._credentials.token()}"
        yield request
