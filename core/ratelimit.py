"""Request rate limits counted in a store every process shares, never in per-process memory:
behind gunicorn with N workers a per-process counter would let N times the limit through.

A limit is a fixed window: at most ``per_window`` hits per key in each ``window``-second slot of
the clock. When Django's default cache is Redis (see settings), one pipelined round trip (INCR +
EXPIRE) counts a hit atomically. Otherwise the database counts it, in one statement
(``core.sql.count_hit``: an UPSERT that returns the new count, exact under concurrency) in a small
table of its own; the database cache would have cost about six statements a hit (a read, a cull
count, an insert or update, each in its own savepoint) and could undercount under races. The first
hit of a key's new window deletes that key's old windows; ``sweep`` (a beat job) deletes the
windows of keys that never came back.

Keys are digests, so nothing a caller sends (an address, a client id) is stored verbatim.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

from core import sql

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
    key = f"{name}:{digest}"
    count = sql.count_hit(key, slot, expires=(slot + 1) * window)
    if count == 1:  # the key's new window: its earlier ones are done with
        sql.forget_counts_before(key, slot)
    return count, retry_after


def sweep(now: float | None = None) -> int:
    """Delete the database's counts of windows that have ended (nothing to do on Redis, whose keys
    expire by themselves). Returns how many went."""
    return sql.sweep_counts(time.time() if now is None else now)


def hit(name: str, key: str, *, per_window: int, window: int = 60, now: float | None = None) -> Exceeded | None:
    """Count one hit of ``key`` against the limit ``name``; None while within it. A limit of 0 is off."""
    if per_window <= 0:
        return None
    count, retry_after = _count(name, key, window, time.time() if now is None else now)
    if count > per_window:
        return Exceeded(per_window, window, retry_after)
    return None
