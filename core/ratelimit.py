"""Request rate limits counted in a store every process shares, never in per-process memory:
behind gunicorn with N workers a per-process counter would let N times the limit through.

A limit is a fixed window: at most ``per_window`` hits per key in each ``window``-second slot of
the clock. When Django's default cache is Redis (see settings), one pipelined round trip (INCR +
EXPIRE) counts a hit atomically. Otherwise the database counts it, in one statement
(``core.sql.count_hits``: an UPSERT that returns the new count, exact under concurrency; a
request's several limits share the statement) in a small table of its own; the database cache
would have cost about six statements a hit (a read, a cull count, an insert or update, each in its
own savepoint) and could undercount under races. The first hit of a key's new window deletes that
key's old windows; ``sweep`` (a beat job) deletes the windows of keys that never came back.

Keys are digests, so nothing a caller sends (an address, a client id) is stored verbatim.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
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


@dataclass(frozen=True)
class Read:
    """A read to send with the count (``hit_all_and_fetch``): ``query.fetch(value, head_params=…)``."""

    query: sql.PreparedValues
    value: object
    head_params: Sequence[object] = ()

    def fetch(self) -> dict | None:
        """The read made on its own (Redis counted, or nothing to count)."""
        return self.query.fetch(self.value, head_params=self.head_params)


def _counts(
    limits: Sequence[tuple[str, str]], window: int, now: float, read: Read | None = None
) -> tuple[list[int], int, dict | None]:
    """Count one hit of each (name, key) in this window, in one round trip, and make ``read`` in the
    same round trip where the database counts (after the count on Redis): (the new counts in the
    order given, seconds until the window ends, the read's row)."""
    slot = int(now // window)
    retry_after = max(1, math.ceil((slot + 1) * window - now))
    keys = [f"{name}:{hashlib.sha256(key.encode()).hexdigest()[:32]}" for name, key in limits]
    cache = caches[CACHE_ALIAS]
    if isinstance(cache, RedisCache):
        full_keys = [cache.make_and_validate_key(f"ratelimit:{key}:{slot}") for key in keys]
        client = cache._cache.get_client(full_keys[0], write=True)
        pipe = client.pipeline(transaction=True)
        for full_key in full_keys:
            pipe.incr(full_key)
            pipe.expire(full_key, window + 1)
        replies = pipe.execute()
        row = None if read is None else read.fetch()
        return [int(count) for count in replies[::2]], retry_after, row
    expires = (slot + 1) * window
    if read is None:
        counted, row = sql.count_hits(keys, slot, expires=expires), None
    else:
        counted, row = sql.count_hits_and_fetch(
            keys, slot, expires=expires, read=read.query, value=read.value, head_params=read.head_params
        )
    for key, count in counted.items():
        if count == 1:  # the key's new window: its earlier ones are done with
            sql.forget_counts_before(key, slot)
    return [counted[key] for key in keys], retry_after, row


def sweep(now: float | None = None) -> int:
    """Delete the database's counts of windows that have ended (nothing to do on Redis, whose keys
    expire by themselves). Returns how many went."""
    return sql.sweep_counts(time.time() if now is None else now)


def hit(name: str, key: str, *, per_window: int, window: int = 60, now: float | None = None) -> Exceeded | None:
    """Count one hit of ``key`` against the limit ``name``; None while within it. A limit of 0 is off."""
    return hit_all([(name, key, per_window)], window=window, now=now)


def hit_all(limits: Sequence[tuple[str, str, int]], *, window: int = 60, now: float | None = None) -> Exceeded | None:
    """Count one hit against each ``(name, key, per_window)`` in one round trip (a request's
    address and its verified caller, say); the first limit in the order given that is used up, or
    None. A limit of 0 is off and not counted."""
    return hit_all_and_fetch(limits, None, window=window, now=now)[0]


def hit_all_and_fetch(
    limits: Sequence[tuple[str, str, int]], read: Read | None, *, window: int = 60, now: float | None = None
) -> tuple[Exceeded | None, dict | None]:
    """``hit_all``, and ``read``'s row (None when it finds none) from the same round trip: with the
    database counting, ONE statement (``core.sql.count_hits_and_fetch``: introspection's credential
    rides on its two counts). The read is made whether or not a limit is used up; what to answer is
    the caller's to decide, limits first."""
    counted = [(name, key, per_window) for name, key, per_window in limits if per_window > 0]
    if not counted:
        return None, None if read is None else read.fetch()
    counts, retry_after, row = _counts(
        [(name, key) for name, key, _ in counted], window, time.time() if now is None else now, read
    )
    for (_, _, per_window), count in zip(counted, counts, strict=True):
        if count > per_window:
            return Exceeded(per_window, window, retry_after), row
    return None, row
