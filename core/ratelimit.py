"""Request rate limits counted in the store every process shares (Django's default cache: Redis
when one is configured, the database cache otherwise — see settings), never in per-process memory:
behind gunicorn with N workers a per-process counter would let N times the limit through.

A limit is a fixed window: at most ``per_window`` hits per key in each ``window``-second slot of
the clock. On Redis one pipelined round trip (INCR + EXPIRE) counts a hit atomically; on other
cache backends ``add``/``incr`` count it, which two processes racing on one key can undercount by
a hit or two — a limit there is approximate under heavy concurrency, never unlimited.

Keys are digests, so nothing a caller sends (an address, a client id) is stored verbatim.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

CACHE_ALIAS = "default"


@dataclass(frozen=True)
class Exceeded:
    """Refused: the window's limit is used; ``retry_after`` whole seconds until the next window."""

    limit: int
    window: int
    retry_after: int


def _count(name: str, key: str, window: int, now: float) -> tuple[int, int]:
    slot = int(now // window)
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    cache_key = f"ratelimit:{name}:{digest}:{slot}"
    cache = caches[CACHE_ALIAS]
    retry_after = max(1, math.ceil((slot + 1) * window - now))
    if isinstance(cache, RedisCache):
        full_key = cache.make_and_validate_key(cache_key)
        client = cache._cache.get_client(full_key, write=True)
        pipe = client.pipeline(transaction=True)
        pipe.incr(full_key)
        pipe.expire(full_key, window + 1)
        count, _ = pipe.execute()
        return int(count), retry_after
    if cache.add(cache_key, 1, window + 1):
        return 1, retry_after
    try:
        return int(cache.incr(cache_key)), retry_after
    except ValueError:  # expired between the add and the incr: this is the new window's first hit
        cache.add(cache_key, 1, window + 1)
        return 1, retry_after


def hit(name: str, key: str, *, per_window: int, window: int = 60, now: float | None = None) -> Exceeded | None:
    """Count one hit of ``key`` against the limit ``name``; None while within it. A limit of 0 is off."""
    if per_window <= 0:
        return None
    count, retry_after = _count(name, key, window, time.time() if now is None else now)
    if count > per_window:
        return Exceeded(per_window, window, retry_after)
    return None
