"""A small per-process memory with a time limit, for the hot paths' lookups whose answer may be a
few seconds old because what must be fresh is checked elsewhere on every request (a verified
token's ``exp``; an API token's standing, read in the request's own statement).

Bounded: when full it forgets everything at once (cheaper than tracking age, and a refill is one
lookup per key). Reads take no lock (a dict read is atomic under the GIL); writes do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class Expiring(Generic[V]):
    def __init__(self, *, seconds: float, max_entries: int):
        self.seconds = seconds
        self._max_entries = max_entries
        self._entries: dict[Hashable, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        """The value remembered for ``key`` less than ``seconds`` ago, or None."""
        hit = self._entries.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.seconds:
            return hit[1]
        return None

    def put(self, key: Hashable, value: V) -> None:
        with self._lock:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[key] = (time.monotonic(), value)

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
