#!/usr/bin/env python
"""Where the half-load p99 of ``POST /api/v1/decisions`` comes from: client and server timings side by side.

    .venv/bin/python bench/tail_probe.py [--workers 2 --threads 8 --duration 8]

Seeds a scratch database (``mandate_bench_tail``, as bench_decisions.py does, and with PostgreSQL
logging statements slower than 15 ms and lock waits over 5 ms for that database only), serves
``bench/timed_wsgi.py`` with gunicorn exactly as bench_decisions.py serves the project, runs a
closed loop to find the full rate, then an open loop at half that rate recording each request's due,
sent and answered times. It then prints: the client's p50/p99; the server's wall and CPU time per
request; garbage collections during the phase; each worker's share of the requests; the machine's
busy cores every 100 ms split into ours (server, PostgreSQL backends, load generator) and everyone
else's; and the slowest requests. PostgreSQL's own log (slow statements, lock waits) is where
``log_destination`` sends it (/var/log/postgresql/ on Debian).
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import bench_decisions as bd  # noqa: E402
import loadgen  # noqa: E402
import procstat  # noqa: E402

bd.SCRATCH_DB = "mandate_bench_tail"


async def _run(port, requests, rate, duration, connections):
    out, start, wall0 = [], time.perf_counter(), time.time()
    deadline, counter = start + duration, {"next": 0}

    async def client(k):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                i = counter["next"]
                counter["next"] += 1
                due = start + i / rate if rate else time.perf_counter()
                if rate and due > time.perf_counter():
                    await asyncio.sleep(due - time.perf_counter())
                if due >= deadline:
                    return
                sent = time.perf_counter()
                writer.write(requests[i % len(requests)])
                _, _, closing = await loadgen._read_response(reader)
                out.append((wall0 + due - start, due, sent, time.perf_counter(), k))
                if closing:
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
        finally:
            writer.close()

    await asyncio.gather(*(client(k) for k in range(connections)))
    return out, time.perf_counter() - start


def _cpu_sampler(server_pid, samples, stop):
    tick = os.sysconf("SC_CLK_TCK")
    while not stop.is_set():
        with open("/proc/stat") as stat:
            fields = list(map(int, stat.readline().split()[1:]))
        busy = (sum(fields) - fields[3] - fields[4]) / tick
        ours = procstat.cpu_seconds(
            [server_pid, *procstat.children(server_pid), *procstat.postgres_pids(bd.SCRATCH_DB), os.getpid()]
        )
        samples.append((time.time(), busy, ours))
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker-class", default="gthread", help="gthread (as bench_decisions.py) or sync")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=8.0)
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    url = bd.scratch_database(base, keep=True)
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        for setting in ("log_min_duration_statement = 15", "log_lock_waits = on", "deadlock_timeout = '5ms'"):
            conn.execute(f"ALTER DATABASE {bd.SCRATCH_DB} SET {setting}")
    timing_dir = tempfile.mkdtemp(prefix="mandate-tail-")
    env = bd.configure_environment(url, tempfile.mkdtemp(prefix="mandate-bench-"))
    tokens, api_token = bd.seed(16)
    env.update(PYTHONPATH=str(HERE), MANDATE_TIMING_DIR=timing_dir)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        str(Path(sys.executable).parent / "gunicorn"), "timed_wsgi:application", "-k", args.worker_class,
        "-w", str(args.workers), "--threads", str(args.threads), "-b", f"127.0.0.1:{port}",
        "--keep-alive", "30", "--log-level", "warning", "--max-requests", "0",
        "--access-logfile", "/dev/null", "--backlog", "512",
    ]  # fmt: skip
    server = subprocess.Popen(cmd, cwd=HERE.parent, env={**os.environ, **env}, start_new_session=True)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        auth = {"Authorization": f"Bearer {api_token}"}
        body = {"scope": "github:write", "resource": "repo:acme/api", "context": {"ticket": "B-1"}}
        requests = [
            loadgen.build_request("POST", "/api/v1/decisions", json.dumps({"token": t, **body}).encode(), auth)
            for t in tokens
        ]
        asyncio.run(_run(port, requests, None, 3, args.connections))  # warm-up
        full, elapsed = asyncio.run(_run(port, requests, None, args.duration, args.connections))
        rate = len(full) / elapsed
        for f in glob.glob(os.path.join(timing_dir, "req-*.log")):
            os.truncate(f, 0)
        samples, stop = [], threading.Event()
        sampler = threading.Thread(target=_cpu_sampler, args=(server.pid, samples, stop))
        sampler.start()
        half, _ = asyncio.run(_run(port, requests, rate / 2, args.duration, args.connections))
        stop.set()
        sampler.join()
        time.sleep(0.6)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
    report(rate, half, samples, timing_dir)
    bd.drop_database(base)


def report(rate, half, samples, timing_dir):
    def pct(values, p):
        values = sorted(values)
        return values[min(int(len(values) * p), len(values) - 1)] * 1000 if values else float("nan")

    latencies = [done - due for (_, due, _, done, _) in half]
    print(f"full rate {rate:.0f}/s; half-load phase: {len(half)} requests at {rate / 2:.0f}/s")
    worst = max(latencies) * 1000
    print(f"client  p50 {pct(latencies, 0.5):.1f} ms  p99 {pct(latencies, 0.99):.1f} ms  max {worst:.1f} ms")
    requests, collections, shares = [], [], {}
    for path in glob.glob(os.path.join(timing_dir, "req-*.log")):
        pid = Path(path).stem.split("-")[1]
        for line in Path(path).read_text().splitlines():
            p = line.split()
            if p[0] == "REQ":
                requests.append((float(p[1]), float(p[2]), float(p[3][4:]), int(p[4][4:]), pid))
                shares[pid] = shares.get(pid, 0) + 1
            elif p[0] == "GC":
                collections.append((float(p[1]), float(p[2]), p[3]))
    walls, cpus = [r[1] for r in requests], [r[2] for r in requests]
    print(f"server  wall p50 {pct(walls, 0.5):.1f} ms  p99 {pct(walls, 0.99):.1f} ms; "
          f"CPU p50 {pct(cpus, 0.5):.2f} ms  p99 {pct(cpus, 0.99):.2f} ms")  # fmt: skip
    total = sum(shares.values()) or 1
    print("requests per worker: " + ", ".join(f"{pid} {n / total:.0%}" for pid, n in sorted(shares.items())))
    slow = [r for r in requests if r[1] > 0.02]
    if slow:
        crowd = sorted(r[3] for r in slow)[len(slow) // 2]
        print(f"server requests over 20 ms: {len(slow)}, their CPU p50 {pct([r[2] for r in slow], 0.5):.2f} ms, "
              f"requests in their worker when they began p50 {crowd}")  # fmt: skip
    gens = {}
    for _, wall, gen in collections:
        gens.setdefault(gen, []).append(wall)
    for gen, walls_ in sorted(gens.items()):
        print(f"GC {gen}: {len(walls_)} passes, longest {max(walls_) * 1000:.1f} ms")
    if len(samples) > 1:
        shares_ = []
        for a, b in itertools.pairwise(samples):
            dt = b[0] - a[0]
            shares_.append(((b[1] - a[1]) / dt, (b[2] - a[2]) / dt))
        busy = sum(s[0] for s in shares_) / len(shares_)
        ours = sum(s[1] for s in shares_) / len(shares_)
        print(f"machine busy {busy:.2f} cores on average, ours {ours:.2f}, everyone else's {busy - ours:.2f}")


if __name__ == "__main__":
    main()
