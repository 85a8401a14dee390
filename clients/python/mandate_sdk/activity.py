"""Activity reporting that never holds the agent up: ``report()`` puts the event on a bounded queue
and returns at once; a background thread sends batches to ``POST /api/v1/events`` and the rest is
sent when the process exits (or on ``close()``).

A full queue drops the event instead of waiting. So do a batch Mandate keeps refusing after a few
tries, and an event Mandate rejects (one bad event refuses its whole batch, so that event is taken
out and the others are sent again). Every drop is counted (``dropped``), logged, and told to
Mandate in the details of the next event sent (``reporter_dropped``), so a gap in the record is
visible there too.
"""

from __future__ import annotations

import atexit
import logging
import queue
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from mandate_sdk.credentials import BearerToken

logger = logging.getLogger("mandate_sdk.activity")
MAX_BATCH = 1000  # what Mandate accepts in one request
_EVENT_INDEX = re.compile(r"^events\[(\d+)\]")


class ActivityReporter:
    """Reports tool calls, secret accesses and privilege-escalation attempts.

    ``auth`` is the agent's own ``CredentialAuth`` (events are its own) or, for a gateway,
    ``BearerToken(api_token)`` with each event naming the agent's credential as ``token``.
    """

    def __init__(
        self,
        base_url: str,
        auth: httpx.Auth | str,
        *,
        max_queue: int = 10_000,
        batch_size: int = 100,
        flush_interval: float = 1.0,
        max_attempts: int = 3,
        client: httpx.Client | None = None,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self.events_url = base_url.rstrip("/") + "/api/v1/events"
        self._auth = BearerToken(auth) if isinstance(auth, str) else auth
        self._batch_size = max(1, min(batch_size, MAX_BATCH))
        self._interval, self._attempts = flush_interval, max(1, max_attempts)
        self._client = client or httpx.Client(timeout=10.0)
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=max_queue)
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._pending = 0  # queued or being sent
        self._unreported_drops = 0
        self.dropped = 0
        self.sent = 0
        self._wait = sleep or self._stop.wait
        self._thread = threading.Thread(target=self._run, name="mandate-activity", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def report(
        self,
        kind: str = "tool_call",
        *,
        scope: str | None = None,
        resource: str | None = None,
        outcome: str | None = None,
        details: dict[str, Any] | None = None,
        token: str | None = None,
        occurred_at: datetime | None = None,
    ) -> bool:
        """Queue one event; False (and counted as dropped) when the queue is full or closed."""
        event: dict[str, Any] = {"kind": kind, "occurred_at": (occurred_at or datetime.now(UTC)).isoformat()}
        for name, value in (("scope", scope), ("resource", resource), ("outcome", outcome), ("token", token)):
            if value is not None:
                event[name] = value
        if details:
            event["details"] = details
        if self._stop.is_set():
            self._drop(1, "the reporter is closed")
            return False
        with self._idle:
            self._pending += 1
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._done(1)
            self._drop(1, "the queue is full")
            return False
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is sent (or dropped); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued and stop; later reports are dropped. Called at exit too."""
        if self._stop.is_set():
            return
        self.flush(timeout=timeout)
        self._stop.set()
        self._thread.join(timeout=1.0)
        atexit.unregister(self.close)
        if self.dropped:
            logger.warning("activity reporter closed: %d events sent, %d dropped", self.sent, self.dropped)

    def __enter__(self) -> ActivityReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the background thread ----------------------------------------------------------------

    def _drop(self, count: int, why: str) -> None:
        with self._idle:
            self.dropped += count
            self._unreported_drops += count
        logger.warning("dropped %d activity event(s): %s", count, why)

    def _done(self, count: int) -> None:
        with self._idle:
            self._pending -= count
            self._idle.notify_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._queue.get(timeout=self._interval)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < self._batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._send(batch)
            except Exception:  # the agent must never be hurt by its reporting
                logger.exception("activity batch lost")
                self._drop(len(batch), "unexpected error")
            finally:
                self._done(len(batch))

    def _send(self, batch: list[dict[str, Any]]) -> None:
        with self._idle:
            drops, self._unreported_drops = self._unreported_drops, 0
        if drops:
            first = batch[0] = dict(batch[0])
            first["details"] = {**first.get("details", {}), "reporter_dropped": drops}
        remaining = list(batch)
        attempt = 0
        while remaining:
            response: httpx.Response | None
            try:
                response = self._client.post(self.events_url, json={"events": remaining}, auth=self._auth)
                why = f"HTTP {response.status_code}"
            except httpx.HTTPError as failed:
                response, why = None, str(failed)
            if response is not None and response.status_code == 202:
                with self._idle:
                    self.sent += len(remaining)
                return
            if response is not None and response.status_code == 400:
                bad = self._rejected_index(response)
                if bad is not None and bad < len(remaining):
                    remaining.pop(bad)
                    self._drop(1, f"Mandate rejected it: {response.text[:200]}")
                    continue
                self._drop(len(remaining), f"Mandate rejected the batch: {response.text[:200]}")
                return
            attempt += 1
            if attempt >= self._attempts:
                self._drop(len(remaining), why)
                return
            retry_after = response.headers.get("Retry-After", "") if response is not None else ""
            self._wait(min(float(retry_after), 30.0) if retry_after.isdigit() else 0.5 * 2**attempt)

    @staticmethod
    def _rejected_index(response: httpx.Response) -> int | None:
        try:
            body = response.json()
        except ValueError:
            return None
        fields = [str(body.get("detail", ""))] + [str(key) for key in body] if isinstance(body, dict) else []
        for field in fields:
            match = _EVENT_INDEX.match(field)
            if match:
                return int(match.group(1))
        return None
