#!/usr/bin/env python
"""How far each single-call hot path is from its floor in this stack, measured served, in one run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/bench_floor.py --runs 3

Serves the project with gunicorn exactly as ``bench_decisions.py`` does (same seed, same server,
same load generator, closed loop), with ``bench/floor_urls.py`` beside the project's URLs, and
measures in each run, one after another:

- ``GET /healthz``: Django's request cycle and gunicorn, no database;
- ``POST /floor/decision`` and ``POST /api/v1/decisions``: the decision's two statements alone
  (load with the caller's standing; the action taken and the record written, committed), then the
  real endpoint;
- ``POST /floor/record``: the second statement alone, the least a recorded decision costs;
- ``POST /floor/introspect`` and ``POST /oauth/introspect``: introspection's one statement alone
  (both counts, the credential, the caller's standing), then the real endpoint.

The floor is what any implementation of the path must spend here with the project's statements;
the real endpoint's distance from it is our code's, the floor's distance from ``/healthz`` is the
stack's (see ``bench/floor_urls.py``). Every figure is a ratio to the same run's ``/healthz``; the
table gives each as the median (min-max) of the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_decisions as served  # noqa: E402
import loadgen  # noqa: E402
from limits import use_bench_limits  # noqa: E402


def form_request(path: str, fields: dict, headers: dict) -> bytes:
    body = urllib.parse.urlencode(fields).encode()
    return loadgen.build_request("POST", path, body, headers, content_type="application/x-www-form-urlencoded")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per phase (at most 60)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (bench_decisions.py's 2 by default)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker (bench_credentials.py serves 4 x 1)")
    parser.add_argument("--envelopes", type=int, default=16)
    args = parser.parse_args()
    duration = min(args.duration, 60.0)
    base_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    if not base_url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("DATABASE_URL must name a PostgreSQL server (the bench creates its own database there)")

    use_bench_limits()  # thousands of introspections a minute from one address; still counted
    database_url = served.scratch_database(base_url, keep=False)
    env = served.configure_environment(database_url, tempfile.mkdtemp(prefix="mandate-bench-"))
    env["DJANGO_SETTINGS_MODULE"] = "floor_settings"
    env["PYTHONPATH"] = str(ROOT / "bench")
    tokens, api_token = served.seed(args.envelopes)
    server, port = served.start_server(env, workers=args.workers, threads=args.threads)
    meter = served.CpuMeter(server.pid)
    try:
        import jwt

        auth = {"Authorization": f"Bearer {api_token}"}
        jtis = {t: jwt.decode(t, options={"verify_signature": False})["jti"] for t in tokens}
        call = {"scope": "github:write", "resource": "repo:acme/api", "context": {"ticket": "B-1"}}

        def post(path: str, body: dict) -> bytes:
            return loadgen.build_request("POST", path, json.dumps(body).encode(), auth)

        phases = {
            "GET /healthz": ([loadgen.build_request("GET", "/healthz")], None),
            "floor: decision's two statements": (
                [post("/floor/decision", {"jti": jtis[t], **call}) for t in tokens],
                b'"allow":true',
            ),
            "floor: the record alone": (
                [post("/floor/record", {"jti": jtis[t], **call}) for t in tokens],
                b'"allow":true',
            ),
            "POST /api/v1/decisions": (
                [post("/api/v1/decisions", {"token": t, **call}) for t in tokens],
                b'"allow":true',
            ),
            "floor: introspection's one statement": (
                [form_request("/floor/introspect", {"jti": jtis[t]}, auth) for t in tokens],
                b'"active": true',
            ),
            "POST /oauth/introspect": (
                [form_request("/oauth/introspect", {"token": t}, auth) for t in tokens],
                b'"active": true',
            ),
        }
        for name, (requests, marker) in phases.items():
            warm = served.phase(
                f"warm-up {name}", meter, port, requests, connections=args.connections, duration=2, marker=marker
            )
            if warm["errors"] or (marker and warm["marker_hits"] < warm["requests"]):
                raise SystemExit(f"{name}: not answered as expected: {warm.get('sample') or warm}")
        runs: dict[str, list[dict]] = {name: [] for name in phases}
        for run in range(args.runs):
            for name, (requests, marker) in phases.items():
                row = served.phase(
                    f"{name} #{run + 1}",
                    meter,
                    port,
                    requests,
                    connections=args.connections,
                    duration=duration,
                    marker=marker,
                )
                runs[name].append(row)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
        from django.db import connections

        connections.close_all()
        served.drop_database(base_url)
    print()
    print(
        f"gunicorn {args.workers} workers x {args.threads} threads, "
        f"{args.connections} connections, {duration:g} s per phase"
    )
    print(table(runs))
    print(f"load average at end {os.getloadavg()} (other work on the machine skews every figure)")


def table(runs: dict[str, list[dict]]) -> str:
    """Rate and CPU per request (server, PostgreSQL, load generator), each as the median (min-max)
    of its runs, the rate also as a ratio to the same run's /healthz."""
    health = runs["GET /healthz"]

    def spread(values: list[float], spec: str) -> str:
        return f"{statistics.median(values):{spec}} ({min(values):{spec}}-{max(values):{spec}})"

    lines = [
        f"{'path':<38} {'rate/s':>24} {'ratio to /healthz':>20} {'server ms':>20} "
        f"{'PostgreSQL ms':>20} {'whole ms':>20}",
    ]
    for name, rows in runs.items():
        rates = [r["per_s"] for r in rows]
        ratios = [r["per_s"] / h["per_s"] for r, h in zip(rows, health, strict=True)]
        cpu = [r["cpu_ms_per_request"] for r in rows]
        whole = [sum(v for v in c.values() if v is not None) for c in cpu]
        lines.append(
            f"{name:<38} {spread(rates, '.0f'):>24} {spread(ratios, '.2f'):>20} "
            f"{spread([c['server'] for c in cpu], '.2f'):>20} {spread([c['postgres'] for c in cpu], '.2f'):>20} "
            f"{spread(whole, '.2f'):>20}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
