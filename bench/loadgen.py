"""A small HTTP/1.1 keep-alive load generator for the benches (127.0.0.1 only, bounded in time).

Closed loop (``rate=None``): ``connections`` clients each send the next request as soon as the
previous answer arrived — the throughput the server sustains. Open loop (``rate=R``): request *i*
is due at ``t0 + i/R``; latency is measured from when it was due, not from when it was sent, so a
stalled server is not hidden by the generator waiting for it (no coordinated omission).

A server that answers ``Connection: close`` (gunicorn's sync workers) gets a new connection for
the next request, and its cost is in the latency, as it would be for a client of that server.

Request bodies are prepared bytes, rotated round-robin; responses are parsed only as far as the
status line and Content-Length.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


def build_request(
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict | None = None,
    content_type: str = "application/json",
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: keep-alive"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method == "POST":
        lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    bodies_sample: list[bytes] = field(default_factory=list)
    marker_hits: int = 0
    elapsed: float = 0.0

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.count / self.elapsed if self.elapsed else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        index = min(round(p / 100 * (len(ordered) - 1)), len(ordered) - 1)
        return ordered[index]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, body, and whether the server closes the connection after it (``Connection: close``,
    as gunicorn's sync workers answer every request)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, closing = 0, False
    for line in head.split(b"\r\n"):
        lowered = line.lower()
        if lowered[:15] == b"content-length:":
            length = int(line[15:])
        elif lowered.startswith(b"connection:") and b"close" in lowered:
            closing = True
    body = await reader.readexactly(length) if length else b""
    return status, body, closing


async def _run(
    host: str,
    port: int,
    requests: list[bytes],
    *,
    connections: int,
    duration: float,
    rate: float | None,
    marker: bytes | None,
) -> Result:
    result = Result()
    deadline = time.perf_counter() + duration
    counter = {"next": 0}
    start = time.perf_counter()

    async def client(k: int):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while True:
                i = counter["next"]
                counter["next"] += 1
                if rate is not None:
                    due = start + i / rate
                    now = time.perf_counter()
                    if due > now:
                        await asyncio.sleep(due - now)
                else:
                    due = time.perf_counter()
                if due >= deadline:
                    return
                writer.write(requests[i % len(requests)])
                status, body, closing = await _read_response(reader)
                result.latencies.append(time.perf_counter() - due)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if marker is not None and marker in body:
                    result.marker_hits += 1
                if len(result.bodies_sample) < 3:
                    result.bodies_sample.append(body[:300])
                if closing:  # a server without keep-alive: the next request needs a new connection
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
        finally:
            writer.close()

    await asyncio.gather(*(client(k) for k in range(connections)))
    result.elapsed = time.perf_counter() - start
    return result


def run(
    port: int,
    requests: list[bytes],
    *,
    connections: int,
    duration: float,
    rate: float | None = None,
    marker: bytes | None = None,
) -> Result:
    """Drive 127.0.0.1:``port`` for ``duration`` seconds (never anything but the loopback)."""
    return asyncio.run(
        _run("127.0.0.1", port, requests, connections=connections, duration=duration, rate=rate, marker=marker)
    )
