#!/usr/bin/env python
"""The physical bounds the hot paths are measured against, on this machine, in one sitting.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/bounds.py

- **durable commit**: a raw psycopg loop of ``INSERT …`` in autocommit (each its own transaction,
  so each waits for its WAL flush), with ``synchronous_commit`` as the server is configured, then
  with it off for the same session (what a commit costs without the flush); a bare round trip
  (``SELECT 1``) for the floor of any statement; and the least a recorded decision asks of the
  database (a keyed read, then one statement that spends a budget and inserts a record, committed
  durably, on tables with no index but their keys). Per operation: wall time, this process's CPU, and
  PostgreSQL's CPU (the session's backend and the WAL writer, from ``/proc``: the database must be on
  this machine).
- **signatures**: raw ``cryptography``: ES256 (ECDSA P-256, SHA-256) sign and verify, Ed25519
  verify (client assertions), per operation in one process.
- **Django's request cycle**: ``GET /healthz`` through the WSGI handler in this process (every
  middleware, no network, no database), CPU per request.

Each figure is the best of ``--rounds`` rounds. A throw-away table is made in a scratch database
(``mandate_bench_bounds``) and dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import procstat  # noqa: E402

SCRATCH_DB = "mandate_bench_bounds"


def best(fn, n: int, rounds: int, server_pids: list[int] | None = None) -> tuple[float, float, float]:
    """(wall µs, CPU µs in this process, CPU µs in ``server_pids``) per call of ``fn``, the best round
    of each (the last NaN when no server processes are given)."""
    wall, cpu, server = float("inf"), float("inf"), float("inf")
    for _ in range(rounds):
        s0 = procstat.cpu_seconds(server_pids or [])
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            fn()
        wall = min(wall, (time.perf_counter() - w0) / n * 1e6)
        cpu = min(cpu, (time.process_time() - c0) / n * 1e6)
        server = min(server, (procstat.cpu_seconds(server_pids or []) - s0) / n * 1e6)
    return wall, cpu, server if server_pids else float("nan")


def database_bounds(base_url: str, n: int, rounds: int) -> dict:
    import psycopg

    parts = urlparse(base_url)
    admin = urlunparse(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{SCRATCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{SCRATCH_DB}"')
    out = {}
    try:
        with psycopg.connect(urlunparse(parts._replace(path=f"/{SCRATCH_DB}")), autocommit=True) as conn:
            configured = conn.execute("SHOW synchronous_commit").fetchone()[0]
            conn.execute("CREATE TABLE bound (id bigserial PRIMARY KEY, at timestamptz, note text)")
            conn.execute("CREATE UNLOGGED TABLE bound_unlogged (k text, n int, PRIMARY KEY (k))")
            # The least a recorded decision asks of PostgreSQL: read a budget by key, then spend one
            # action and insert the record in one statement, committed durably.
            conn.execute("CREATE TABLE bound_budget (id int PRIMARY KEY, used int NOT NULL, cap int NOT NULL)")
            conn.execute("INSERT INTO bound_budget VALUES (1, 0, 2000000000)")
            conn.execute(
                "CREATE TABLE bound_record (id bigserial PRIMARY KEY, budget int, at timestamptz, scope text,"
                " resource text, details jsonb)"
            )
            pids = [conn.execute("SELECT pg_backend_pid()").fetchone()[0], *procstat.postgres_pids()]

            def insert():
                conn.execute("INSERT INTO bound (at, note) VALUES (now(), %s)", ["x"], prepare=True)

            def select():
                conn.execute("SELECT 1", prepare=True).fetchone()

            def upsert():
                conn.execute(
                    "INSERT INTO bound_unlogged VALUES ('k', 1) ON CONFLICT (k) DO UPDATE SET n = bound_unlogged.n + 1"
                    " RETURNING n",
                    prepare=True,
                ).fetchone()

            def decision_floor():
                conn.execute("SELECT used, cap FROM bound_budget WHERE id = 1", prepare=True).fetchone()
                conn.execute(
                    "WITH spent AS (UPDATE bound_budget SET used = used + 1 WHERE id = 1 AND used < cap"
                    " RETURNING id) INSERT INTO bound_record (budget, at, scope, resource, details)"
                    " SELECT id, now(), %s, %s, %s FROM spent RETURNING id",
                    ["github:write", "repo:acme/api", '{"ticket": "B-1"}'],
                    prepare=True,
                ).fetchone()

            out["round trip (SELECT 1)"] = best(select, n, rounds, pids)
            out[f"INSERT + durable COMMIT (synchronous_commit={configured})"] = best(insert, n, rounds, pids)
            conn.execute("SET synchronous_commit = off")
            out["INSERT + COMMIT (synchronous_commit=off)"] = best(insert, n, rounds, pids)
            conn.execute(f"SET synchronous_commit = {configured}")
            out["UPSERT counter in an unlogged table + COMMIT"] = best(upsert, n, rounds, pids)
            out["a recorded decision's floor: keyed SELECT, then UPDATE budget + INSERT record, durable COMMIT"] = best(
                decision_floor, n, rounds, pids
            )
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{SCRATCH_DB}" WITH (FORCE)')
    return out


def signature_bounds(n: int, rounds: int) -> dict:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    message = os.urandom(300)  # about a JWT's signing input
    p256 = ec.generate_private_key(ec.SECP256R1())
    signature = p256.sign(message, ec.ECDSA(hashes.SHA256()))
    public = p256.public_key()
    ed = ed25519.Ed25519PrivateKey.generate()
    ed_signature = ed.sign(message)
    ed_public = ed.public_key()
    return {
        "ES256 sign (raw cryptography)": best(lambda: p256.sign(message, ec.ECDSA(hashes.SHA256())), n, rounds),
        "ES256 verify (raw cryptography)": best(
            lambda: public.verify(signature, message, ec.ECDSA(hashes.SHA256())), n, rounds
        ),
        "Ed25519 verify (raw cryptography)": best(lambda: ed_public.verify(ed_signature, message), n, rounds),
    }


def django_bounds(n: int, rounds: int) -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    os.environ.setdefault("MANDATE_TESTING", "1")
    import django

    django.setup()
    from django.test import Client

    client = Client(HTTP_HOST="localhost")

    def healthz():
        assert client.get("/healthz").status_code == 200

    for _ in range(50):
        healthz()
    return {"GET /healthz in process (Django's request cycle, test client)": best(healthz, n, rounds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="operations per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    results = {}
    if base.startswith(("postgres://", "postgresql://")):
        results.update(database_bounds(base, args.n, args.rounds))
    results.update(signature_bounds(args.n, args.rounds))
    results.update(django_bounds(args.n, args.rounds))
    print(f"best of {args.rounds} rounds of {args.n}; load average {os.getloadavg()}")
    print(f"| {'bound':70s} | wall µs/op | CPU µs/op (this process) | PostgreSQL CPU µs/op |")
    print(f"|{'-' * 72}|-----------:|-------------------------:|---------------------:|")
    for name, (wall, cpu, server) in results.items():
        server_text = "-" if server != server else f"{server:.1f}"
        print(f"| {name:70s} | {wall:10.1f} | {cpu:24.1f} | {server_text:>20s} |")


if __name__ == "__main__":
    main()
