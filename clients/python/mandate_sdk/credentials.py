"""Short-lived credentials for one envelope: minted at ``/oauth/token`` with a fresh client assertion
each time (RFC 7523), cached, and minted again shortly before they expire.

Many threads (``Credentials``) or asyncio tasks (``AsyncCredentials``) may ask at once: the first to
find the cache stale mints while the others wait for it, so one refresh is one mint.

Two refusals are not final while the cached credential still lives: ``slow_down`` (429, too many
mints a minute) and the live-credential cap (``invalid_grant`` naming ``max_live``). Then the cached
credential is used until it expires, and no mint is tried again before ``Retry-After`` (or a few
seconds for the cap). With nothing cached, a ``slow_down`` is waited out once when its
``Retry-After`` is at most ``max_wait`` seconds; otherwise the refusal is raised.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from mandate_sdk.keys import PrivateKey, algorithm_for

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"
# A client assertion is used once, right away; a minute is ample and well inside Mandate's limits.
ASSERTION_LIFETIME_SECONDS = 60
# After the live-credential cap refused a mint, how long the cached credential is used before asking again.
CAP_BACKOFF_SECONDS = 5.0


class MandateError(Exception):
    """Mandate refused: ``error`` is the OAuth error code, ``description`` says why; ``retry_after``
    is the wait a 429 or 503 asked for, in seconds (else None)."""

    def __init__(self, error: str, description: str, status: int, retry_after: float | None = None):
        super().__init__(f"{error}: {description}")
        self.error, self.description, self.status = error, description, status
        self.retry_after = retry_after

    @property
    def throttled(self) -> bool:
        return self.status == 429

    @property
    def at_live_cap(self) -> bool:
        """The policy's ``[credentials] max_live`` refused: this instance holds as many live
        credentials under the envelope as it may."""
        return self.error == "invalid_grant" and "max_live" in self.description


@dataclass(frozen=True)
class MintedCredential:
    access_token: str
    expires_at: float
    scope: str
    envelope: str
    envelope_ends_at: float | None = None  # when the envelope's authority ends (time.time() clock)


def error_from(response: httpx.Response) -> MandateError:
    """The ``MandateError`` an OAuth or REST error answer says."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    retry_after: float | None = None
    header = response.headers.get("Retry-After", "")
    if header.isdigit():
        retry_after = float(header)
    error = body.get("error") or body.get("code") or ("slow_down" if response.status_code == 429 else "server_error")
    description = body.get("error_description") or body.get("detail") or f"HTTP {response.status_code}"
    return MandateError(str(error), str(description), response.status_code, retry_after)


class _Grant:
    """What ``Credentials`` and ``AsyncCredentials`` share: the form, the answer, the cache rules."""

    def __init__(
        self,
        base_url: str,
        *,
        spiffe_id: str,
        key: PrivateKey | None = None,
        workload_token: Callable[[], str] | None = None,
        envelope: str | None = None,
        scopes: list[str] | None = None,
        audience: str | None = None,
        resource: str | None = None,
        subject_token: Callable[[], str] | None = None,
        refresh_margin: float = 30.0,
        max_wait: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if (envelope is None) == (subject_token is None):
            raise ValueError("name the envelope, or (for delegation) the subject token, not both")
        self.token_url = base_url.rstrip("/") + "/oauth/token"
        self.spiffe_id, self.envelope = spiffe_id, envelope
        if (key is None) == (workload_token is None):
            raise ValueError("authenticate with the instance's key or a workload token, one of them")
        self._key, self._workload_token = key, workload_token
        self._scopes, self._audience, self._resource = scopes, audience, resource
        self._subject_token = subject_token
        self._margin, self._max_wait, self._clock = refresh_margin, max_wait, clock
        self._current: MintedCredential | None = None
        self._not_before = 0.0  # no mint is tried before this (after slow_down or the cap)

    def client_assertion(self) -> str:
        """A fresh RFC 7523 assertion signed with the instance's key, or the current workload token
        from a trusted issuer (read anew each time: such tokens are rotated by the platform)."""
        if self._workload_token is not None:
            return self._workload_token()
        assert self._key is not None
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
        return jwt.encode(claims, self._key, algorithm=algorithm_for(self._key))

    def _form(self) -> dict[str, str]:
        form: dict[str, str]
        if self._subject_token is not None:
            # RFC 8693: the delegating instance's credential, this instance's assertion as the actor.
            form = {
                "grant_type": TOKEN_EXCHANGE,
                "subject_token": self._subject_token(),
                "subject_token_type": TOKEN_TYPE_JWT,
                "actor_token": self.client_assertion(),
                "actor_token_type": TOKEN_TYPE_JWT,
            }
        else:
            form = {
                "grant_type": "client_credentials",
                "client_assertion_type": JWT_BEARER,
                "client_assertion": self.client_assertion(),
                "envelope": str(self.envelope),
            }
            if self._workload_token is not None:
                form["client_id"] = self.spiffe_id  # names the instance the workload token must belong to
        if self._scopes is not None:
            form["scope"] = " ".join(self._scopes)
        if self._audience is not None:
            form["audience"] = self._audience
        if self._resource is not None:
            form["resource"] = self._resource
        return form

    def _parse(self, response: httpx.Response, started: float) -> MintedCredential:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
            raise error_from(response)
        return MintedCredential(
            access_token=body["access_token"],
            expires_at=started + int(body["expires_in"]),
            scope=body.get("scope", ""),
            envelope=body.get("envelope", self.envelope or ""),
            envelope_ends_at=(
                started + int(body["envelope_expires_in"]) if isinstance(body.get("envelope_expires_in"), int) else None
            ),
        )

    def _fresh(self) -> MintedCredential | None:
        current = self._current
        if current is None:
            return None
        now = self._clock()
        if current.expires_at - self._margin > now:
            return current
        if now < self._not_before and current.expires_at > now + 1:
            return current  # stale but alive, and Mandate asked us to hold off
        return None

    def _fallback(self, refused: MandateError) -> MintedCredential | None:
        """After a refusal: the cached credential while it lives, for a throttle or the cap."""
        if not (refused.throttled or refused.at_live_cap):
            return None
        now = self._clock()
        pause = refused.retry_after if refused.retry_after is not None else CAP_BACKOFF_SECONDS
        self._not_before = now + pause
        current = self._current
        if current is not None and current.expires_at > now + 1:
            return current
        return None

    def _should_wait(self, refused: MandateError, attempt: int) -> float | None:
        retry_after = refused.retry_after
        if attempt == 0 and refused.throttled and retry_after is not None and retry_after <= self._max_wait:
            return retry_after
        return None


class Credentials(_Grant):
    """The current credential of one instance under one envelope (or, with ``subject_token``, the
    credential delegated to this instance by another one: RFC 8693 token exchange).

    ``refresh_margin`` seconds before expiry the next call mints a new one. ``clock`` is what that
    decision reads the time from and ``sleep`` how a ``Retry-After`` is waited (tests pass their own).
    """

    def __init__(
        self,
        base_url: str,
        *,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        **options: Any,
    ) -> None:
        super().__init__(base_url, **options)
        self._client = client or httpx.Client(timeout=10.0)
        self._sleep = sleep
        self._lock = threading.Lock()

    def current(self) -> MintedCredential:
        """The cached credential while it has more than the margin left; otherwise a new one."""
        fresh = self._fresh()
        if fresh is not None:
            return fresh
        with self._lock:
            fresh = self._fresh()  # another thread may have minted while this one waited
            if fresh is not None:
                return fresh
            for attempt in (0, 1):
                try:
                    self._current = self._mint()
                    return self._current
                except MandateError as refused:
                    cached = self._fallback(refused)
                    if cached is not None:
                        return cached
                    wait = self._should_wait(refused, attempt)
                    if wait is None:
                        raise
                    self._sleep(wait)
            raise AssertionError("unreachable")

    def token(self) -> str:
        return self.current().access_token

    def delegate(self, base_url: str | None = None, **options: Any) -> Credentials:
        """Credentials for another instance (``spiffe_id``, ``key``) delegated from this one's
        current credential; the envelope must allow delegation."""
        return Credentials(base_url or self.token_url.removesuffix("/oauth/token"), subject_token=self.token, **options)

    def _mint(self) -> MintedCredential:
        started = self._clock()
        return self._parse(self._client.post(self.token_url, data=self._form()), started)


class AsyncCredentials(_Grant):
    """``Credentials`` for asyncio: ``await credentials.current()``; concurrent tasks share one mint.
    ``subject_token`` for delegation is then an async callable (e.g. another ``AsyncCredentials``'
    ``token``)."""

    def __init__(
        self,
        base_url: str,
        *,
        client: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        subject_token: Callable[[], Awaitable[str]] | None = None,
        **options: Any,
    ) -> None:
        # The form is built synchronously; the subject token is fetched before each mint.
        self._async_subject = subject_token
        self._subject_value = ""
        super().__init__(base_url, subject_token=(lambda: self._subject_value) if subject_token else None, **options)
        self._client = client or httpx.AsyncClient(timeout=10.0)
        self._sleep = sleep
        self._lock = asyncio.Lock()

    async def current(self) -> MintedCredential:
        fresh = self._fresh()
        if fresh is not None:
            return fresh
        async with self._lock:
            fresh = self._fresh()
            if fresh is not None:
                return fresh
            for attempt in (0, 1):
                try:
                    self._current = await self._mint()
                    return self._current
                except MandateError as refused:
                    cached = self._fallback(refused)
                    if cached is not None:
                        return cached
                    wait = self._should_wait(refused, attempt)
                    if wait is None:
                        raise
                    await self._sleep(wait)
            raise AssertionError("unreachable")

    async def token(self) -> str:
        return (await self.current()).access_token

    def delegate(self, base_url: str | None = None, **options: Any) -> AsyncCredentials:
        return AsyncCredentials(
            base_url or self.token_url.removesuffix("/oauth/token"), subject_token=self.token, **options
        )

    async def _mint(self) -> MintedCredential:
        if self._async_subject is not None:
            self._subject_value = await self._async_subject()
        started = self._clock()
        return self._parse(await self._client.post(self.token_url, data=self._form()), started)

    async def aclose(self) -> None:
        await self._client.aclose()


class CredentialAuth(httpx.Auth):
    """Puts the instance's current credential on each outgoing request as a Bearer token (sync and
    async httpx clients alike)."""

    def __init__(self, credentials: Credentials | AsyncCredentials) -> None:
        self._credentials = credentials

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if not isinstance(self._credentials, Credentials):
            raise TypeError("AsyncCredentials need an httpx.AsyncClient")
        request.headers["Authorization"] = f"Bearer {self._credentials.token()}"
        yield request

    async def async_auth_flow(self, request: httpx.Request) -> Any:
        if isinstance(self._credentials, AsyncCredentials):
            token = await self._credentials.token()
        else:
            token = self._credentials.token()  # brief, and only when a refresh is due
        request.headers["Authorization"] = f"Bearer {token}"
        yield request


class BearerToken(httpx.Auth):
    """A fixed Bearer token, e.g. a person's or a gateway's API token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request
