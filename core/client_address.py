"""The client's address as seen through the proxies we trust (``MANDATE_TRUSTED_PROXIES``).

Without trusted proxies the client is the connection's peer (``REMOTE_ADDR``): a forwarded header
from anyone else is ignored, or any client could name itself. Behind trusted proxies the client is
the right-most ``X-Forwarded-For`` address that is not one of them (each proxy appends the peer it saw).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings


@lru_cache(maxsize=64)
def _networks(entries: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip())


def address_in(address: str | None, entries) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in _networks(tuple(entries)))


def client_address(request) -> str | None:
    peer = request.META.get("REMOTE_ADDR") or None
    trusted = tuple(settings.MANDATE_TRUSTED_PROXIES)
    if not trusted or not address_in(peer, trusted):
        return peer
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if not address_in(hop, trusted):
            return hop
    return hops[0] if hops else peer
