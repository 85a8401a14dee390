#!/usr/bin/env python
"""The physical bounds the hot paths are measured against, on this machine, in one sitting.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/bounds.py

- **durable commit**: a raw psycopg loop of ``INSERT …`` in autocommit (each its own transaction,
  so each waits for its WAL flush), with ``synchronous_commit`` as the server is configured, then
  with it off for the same session (what a commit costs without the flush); and a bare round trip
  (``SELECT 1``) for the floor of any statement. Per operation: wall time and this process's CPU.
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
SCRATCH_DB = "mandate_bench_bounds"


def best(fn, n: int, rounds: int) -> tuple[float, float]:
    """(wall µs, CPU µs) per call of ``fn``, the best round of each."""
    wall, cpu = float("inf"), float("inf")
    for _ in range(rounds):
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            fn()
        wall = min(wall, (time.perf_counter() - w0) / n * 1e6)
        cpu = min(cpu, (time.process_time() - c0) / n * 1e6)
    return wall, cpu


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

            out["round trip (SELECT 1)"] = best(select, n, rounds)
            out[f"INSERT + durable COMMIT (synchronous_commit={configured})"] = best(insert, n, rounds)
            conn.execute("SET synchronous_commit = off")
            out["INSERT + COMMIT (synchronous_commit=off)"] = best(insert, n, rounds)
            conn.execute(f"SET synchronous_commit = {configured}")
            out["UPSERT counter in an unlogged table + COMMIT"] = best(upsert, n, rounds)
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
    print(f"| {'bound':70s} | wall µs/op | CPU µs/op (this process) |")
    print(f"|{'-' * 72}|-----------:|-------------------------:|")
    for name, (wall, cpu) in results.items():
        print(f"| {name:70s} | {wall:10.1f} | {cpu:24.1f} |")


if __name__ == "__main__":
    main()
