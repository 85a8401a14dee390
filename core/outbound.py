"""The one outbound HTTP client: the documents Mandate fetches from elsewhere (a trusted workload
issuer's OpenID discovery document and its JWK Set) are fetched only through ``fetch_json``.

Rules, each a refusal (``OutboundRefused``) before any byte is sent:

- **https only** in production. With ``DEBUG`` (development) plain http is allowed to loopback, so
  people can try a provider on their machine.
- **Public addresses only**: the name is resolved once, and every address it resolves to must be
  public — private, loopback, link-local (cloud metadata at 169.254.169.254), multicast, reserved,
  shared and unspecified addresses are refused. Loopback is allowed with ``DEBUG``; in production a
  ``host:port`` listed in ``MANDATE_OUTBOUND_ALLOW`` may be reached whatever its address (a
  provider beside Mandate), and, when that address is loopback, over plain http too.
- **The address that was checked is the one connected to**: the request goes to the IP literal,
  with the name in the ``Host`` header and as the TLS server name (SNI, and the certificate is
  verified against the name), so a second DNS answer cannot send it elsewhere (DNS rebinding).
  Proxies from the environment are ignored for the same reason.

And while fetching (``OutboundFailed``): redirects are never followed (a 3xx is a failure), one
deadline bounds the whole fetch — resolution, connection, TLS, headers and body however slowly it
drips — at ``MANDATE_OUTBOUND_DEADLINE_SECONDS`` (5), the body is capped at ``MAX_BYTES`` and must
be a JSON object (``core.json_input``'s depth limit applies).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from core import json_input

MAX_BYTES = 512 * 1024
_DEFAULT_PORTS = {"https": 443, "http": 80}
# Name resolution runs here, not in asyncio's default executor: a resolver that hangs past the
# deadline is abandoned, never waited for.
_RESOLVER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="outbound-resolve")


class OutboundRefused(ValueError):
    """The URL, or an address its name resolves to, is not one Mandate fetches from."""


class OutboundFailed(ValueError):
    """The fetch was allowed but failed: network, deadline, redirect, status, size or not JSON."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    allow_listed: bool

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def _tls_verify() -> Any:
    """What certificates are checked against: the system's trust store (a test's own CA)."""
    return True


def deadline_seconds() -> float:
    return float(getattr(settings, "MANDATE_OUTBOUND_DEADLINE_SECONDS", 5))


def _development() -> bool:
    return bool(settings.DEBUG)


def _allow_list() -> set[str]:
    return {str(entry).strip().lower() for entry in getattr(settings, "MANDATE_OUTBOUND_ALLOW", []) if entry}


def check_url(url: object) -> Target:
    """The parts of ``url`` to fetch, or ``OutboundRefused`` when its form is not allowed (the
    address it resolves to is checked at fetch time)."""
    if not isinstance(url, str) or not url or len(url) > 2000:
        raise OutboundRefused("not a URL")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise OutboundRefused("not a valid URL") from None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host:
        raise OutboundRefused("must be an https URL")
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise OutboundRefused("must be a plain URL without user info or fragment")
    port = port or _DEFAULT_PORTS[scheme]
    named = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    allow_listed = named in _allow_list()
    if scheme == "http" and not (_development() or allow_listed):
        raise OutboundRefused("must be an https URL (plain http only to loopback in development)")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(scheme=scheme, host=host, port=port, path=path, allow_listed=allow_listed)


def address_refusal(address: str, target: Target) -> str | None:
    """Why ``address`` may not be connected to for ``target``, or None when it may."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return None if (_development() or target.allow_listed) else "a loopback address"
    if target.scheme == "http":
        return "plain http is allowed to loopback only"
    if target.allow_listed:
        return None
    for label, flag in (
        ("an unspecified address", ip.is_unspecified),
        ("a link-local address (cloud metadata lives there)", ip.is_link_local),
        ("a multicast address", ip.is_multicast),
        ("a private address", ip.is_private),
        ("a reserved address", ip.is_reserved),
    ):
        if flag:
            return label
    return None if ip.is_global else "not a public address"


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (tests replace this to keep off the network)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def checked_address(target: Target) -> str:
    """The first address of ``target``'s host, after every address it resolves to passed."""
    try:
        ipaddress.ip_address(target.host)
        addresses = [target.host]
    except ValueError:
        try:
            addresses = resolve(target.host, target.port)
        except OSError as exc:
            raise OutboundFailed(f"could not resolve {target.host}: {exc}") from None
    if not addresses:
        raise OutboundFailed(f"{target.host} resolves to no address")
    for address in addresses:
        why = address_refusal(address, target)
        if why:
            shown = "is" if address == target.host else f"resolves to {address},"
            raise OutboundRefused(f"{target.host} {shown} {why}; Mandate does not fetch from there")
    return addresses[0]


def fetch_json(url: str, *, deadline: float | None = None) -> dict:
    """The JSON object at ``url``, fetched under the rules above, within ``deadline`` seconds."""
    target = check_url(url)
    budget = deadline_seconds() if deadline is None else deadline
    try:
        body = _run(_within(budget, _fetch(target, budget)))
    except TimeoutError:
        raise OutboundFailed(f"no complete answer from {target.host} within {budget:g} s") from None
    try:
        document = json_input.loads(body)
    except json_input.JsonInputError as exc:
        raise OutboundFailed(f"{target.host} did not answer JSON: {exc}") from None
    if not isinstance(document, dict):
        raise OutboundFailed(f"{target.host} did not answer a JSON object")
    return document


def _run(work: Any) -> bytes:
    """Run the fetch on an event loop of its own (in a helper thread if this one already has one)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbound-fetch") as pool:
        return pool.submit(asyncio.run, work).result()


async def _within(budget: float, work: Any) -> bytes:
    async with asyncio.timeout(budget):
        return await work


async def _fetch(target: Target, budget: float) -> bytes:
    loop = asyncio.get_running_loop()
    address = await loop.run_in_executor(_RESOLVER, checked_address, target)
    netloc = f"[{address}]" if ":" in address else address
    url = f"{target.scheme}://{netloc}:{target.port}{target.path}"
    headers = {
        "Host": target.host_header,
        "Accept": "application/json",
        "Accept-Encoding": "identity",
        "User-Agent": "mandate",
    }
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    transport = httpx.AsyncHTTPTransport(retries=0, verify=_tls_verify())
    try:
        async with (
            httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False, timeout=budget) as client,
            client.stream("GET", url, headers=headers, extensions=extensions) as response,
        ):
            if response.is_redirect or 300 <= response.status_code < 400:
                raise OutboundFailed(
                    f"{target.host} answered with a redirect ({response.status_code}); redirects are not followed"
                )
            if response.status_code != 200:
                raise OutboundFailed(f"{target.host} answered {response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_BYTES:
                raise OutboundFailed(f"the document is larger than {MAX_BYTES} bytes")
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > MAX_BYTES:
                    raise OutboundFailed(f"the document is larger than {MAX_BYTES} bytes")
            return bytes(body)
    except httpx.HTTPError as exc:
        raise OutboundFailed(f"could not fetch from {target.host}: {exc.__class__.__name__} {exc}") from None
