"""The address a request came from, through ONE trusted-proxy setting.

``MANDATE_TRUSTED_PROXIES`` lists the networks (CIDRs) of the reverse proxies in front of Mandate.
``X-Forwarded-For`` is honoured only when the connection itself comes from one of them, and then
read from the right: each hop a trusted proxy appended is skipped, and the first address that is
not a trusted proxy is the client. Anything to its left was written by the client and is ignored,
so nobody can pick the address a rate limit or a lockout is keyed on by sending a header.

Everything that keys on a caller's address (login lockout, OAuth rate limits, metrics) asks here.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: list[str] | tuple[str, ...]) -> tuple[Network, ...]:
    """CIDRs (or single addresses) as networks; a bad entry stops start-up naming it."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ImproperlyConfigured(f"MANDATE_TRUSTED_PROXIES: {value!r} is not an address or CIDR") from None
    return tuple(networks)


@lru_cache(maxsize=8)
def _trusted(values: tuple[str, ...]) -> tuple[Network, ...]:
    return parse_networks(values)


@lru_cache(maxsize=4096)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``text`` (an address, perhaps with a port) parsed, or None. Remembered: the same few peers
    (a gateway, a proxy) ask on every request, and parsing took about 4 % of an introspection's
    view in its profile; the answers are immutable."""
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def _is_trusted(address, networks: tuple[Network, ...]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def client_address(request) -> str:
    """The client's address as text (``"0.0.0.0"`` when even the socket's is unusable)."""
    peer = _address(request.META.get("REMOTE_ADDR", "") or "")
    if peer is None:
        return "0.0.0.0"  # noqa: S104 - a key, never something we bind to
    networks = _trusted(tuple(getattr(settings, "MANDATE_TRUSTED_PROXIES", ()) or ()))
    if not networks or not _is_trusted(peer, networks):
        return str(peer)
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    client = peer
    for hop in reversed([part for part in forwarded.split(",") if part.strip()]):
        address = _address(hop)
        if address is None:
            break  # garbage from further left: the last hop we could read is all we know
        client = address
        if not _is_trusted(address, networks):
            break
    return str(client)


def address_in(address: str | None, entries) -> bool:
    """Whether ``address`` lies in any of the CIDRs ``entries`` (False for anything not an address)."""
    parsed = _address(address or "")
    if parsed is None:
        return False
    try:
        networks = _trusted(tuple(entries))
    except ImproperlyConfigured:
        return False
    return _is_trusted(parsed, networks)
