"""Decisions per second and p50/p99 through the real HTTP endpoint, and events ingested per second.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/bench_decisions.py

Creates a scratch database (``mandate_bench_decisions`` on the server of DATABASE_URL; dropped at
the end unless ``--keep``), migrates it, registers one agent with ``--envelopes`` live envelopes and
a credential for each, and serves the project with gunicorn (gthread workers, persistent database
connections) on 127.0.0.1 exactly as it would run in production (DEBUG off). In the same run it
measures, with the same load generator against the same server:

- ``GET /healthz`` (the server's floor: Django + gunicorn, no database);
- ``POST /api/v1/decisions``, the same call as an AuthZEN ``POST /access/v1/evaluation``, and
  ``POST /access/v1/evaluations`` with 50 per request: each closed loop (full load), then open loop
  at half that rate; ``--runs`` times (default 3), each run with its own ``/healthz`` phase, and
  a table of medians with their spread (``bench/report.py``);
- the raw ES256 verification rate of one process (``verify_access_token``, no cache);
- ``POST /api/v1/events`` with batches of 100 and 1,000, beside a raw ``COPY`` of the same rows.

It checks that every answered decision is in the activity record, and prints CPU seconds per
process group (server, PostgreSQL, load generator) so the limiting resource is visible.
Load goes to 127.0.0.1 only and every phase is bounded by ``--duration``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import loadgen  # noqa: E402
import procstat  # noqa: E402
import report  # noqa: E402

BATCH = 50  # evaluations per AuthZEN batch request, as the goal counts them

SCRATCH_DB = "mandate_bench_decisions"


# --- process CPU accounting ------------------------------------------------------------------------


class CpuMeter:
    def __init__(self, server_pid: int):
        self.server_pid = server_pid

    def snapshot(self) -> dict:
        server = [self.server_pid, *procstat.children(self.server_pid)]
        return {
            "server": procstat.cpu_seconds(server),
            "postgres": procstat.cpu_seconds(procstat.postgres_pids(SCRATCH_DB)),
            "loadgen": procstat.cpu_seconds([os.getpid()]),
        }

    @staticmethod
    def diff(before: dict, after: dict, seconds: float) -> dict:
        return {k: round((after[k] - before[k]) / seconds, 2) for k in before}


# --- set-up ----------------------------------------------------------------------------------------


def scratch_database(base_url: str, keep: bool) -> str:
    import psycopg

    parts = urlparse(base_url)
    admin_url = urlunparse(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{SCRATCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{SCRATCH_DB}"')
    return urlunparse(parts._replace(path=f"/{SCRATCH_DB}"))


def drop_database(base_url: str) -> None:
    import psycopg

    admin_url = urlunparse(urlparse(base_url)._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{SCRATCH_DB}" WITH (FORCE)')


def configure_environment(database_url: str, data_dir: str) -> dict:
    from cryptography.fernet import Fernet

    env = {
        "DATABASE_URL": database_url,
        "DEBUG": "false",
        "MANDATE_TESTING": "0",
        "SECRET_KEY": "bench-" + os.urandom(16).hex(),
        "MANDATE_KEY_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "MANDATE_AUDIT_KEY": os.urandom(32).hex(),  # required with DEBUG off
        "SECURE_SSL_REDIRECT": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "MANDATE_DATA_DIR": data_dir,
        "LOG_LEVEL": "WARNING",
        "DB_CONN_MAX_AGE": "600",
        "DJANGO_SETTINGS_MODULE": "console.settings",
    }
    os.environ.update(env)
    return env


def seed(envelopes: int) -> tuple[list[str], str]:
    """One agent, ``envelopes`` live envelopes with a credential each, and a gateway API token."""
    import django

    django.setup()
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from django.utils import timezone
    from jwt.algorithms import OKPAlgorithm

    from accounts.models import ApiToken
    from identities import services as ids
    from identities.credential_jwt import mint_credential
    from tasks import services

    call_command("migrate", verbosity=0)
    roles = {name: Group.objects.get_or_create(name=name)[0] for name in ("agent-owner", "identity-admin", "gateway")}
    owner = User.objects.create_user("owner")
    owner.groups.add(roles["agent-owner"])
    admin = User.objects.create_user("admin")
    admin.groups.add(roles["identity-admin"])
    gateway = User.objects.create_user("gateway")
    gateway.groups.add(roles["gateway"])
    secret = ApiToken.new_secret()
    ApiToken.objects.create(user=gateway, name="bench", prefix=secret[:8], digest=ApiToken.digest_of(secret))
    agent = ids.register_agent(
        actor=owner,
        owner=owner,
        slug="bench-agent",
        name="Bench",
        ceiling=["github:write"],
        max_envelope_seconds=8 * 3600,
    )
    agent = ids.approve_pending_change(agent=agent, actor=admin)  # the ceiling, by another person
    tokens = []
    for n in range(envelopes):
        jwk = OKPAlgorithm.to_jwk(ed25519.Ed25519PrivateKey.generate().public_key(), as_dict=True)
        instance = ids.register_instance(agent=agent, actor=owner, public_jwk=jwk, label=f"worker-{n}")
        envelope = services.request_envelope(
            actor=owner,
            instance=instance,
            intent="bench",
            scopes=["github:write"],
            resources=["repo:acme/*"],
            duration_seconds=3 * 3600,
            max_actions=1_000_000,
        )
        services.approve_envelope(envelope=envelope, actor=admin)
        envelope.refresh_from_db()
        tokens.append(
            mint_credential(
                instance=instance,
                envelope=envelope,
                scopes=["github:write"],
                audience="mandate",
                expires_at=timezone.now() + timedelta(hours=1),
            ).token
        )
    from django.db import connections

    connections.close_all()
    return tokens, secret


def start_server(
    env: dict, *, workers: int, threads: int, worker_class: str = "gthread"
) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        str(Path(sys.executable).parent / "gunicorn"),
        "console.wsgi:application",
        "-k",
        worker_class,
        "-w",
        str(workers),
        "--threads",
        str(threads),
        "-b",
        f"127.0.0.1:{port}",
        "--keep-alive",
        "30",
        "--log-level",
        "warning",
        # gunicorn.conf.py in the working folder is read too: its worker recycling (max_requests)
        # closes kept-alive connections mid-run, and its access log would write a line per request.
        "--max-requests",
        "0",
        "--access-logfile",
        "/dev/null",
        "--backlog",
        "512",
    ]
    server = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, start_new_session=True)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            return server, port
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("gunicorn did not come up")


# --- phases ----------------------------------------------------------------------------------------


def phase(name, meter, port, requests, **kw) -> dict:
    before, started = meter.snapshot(), time.perf_counter()
    result = loadgen.run(port, requests, **kw)
    cpu = CpuMeter.diff(before, meter.snapshot(), time.perf_counter() - started)
    bad = {s: n for s, n in result.statuses.items() if s >= 300}
    row = {
        "phase": name,
        "requests": result.count,
        "per_s": round(result.rate, 1),
        "p50_ms": round(result.percentile(50) * 1000, 2),
        "p99_ms": round(result.percentile(99) * 1000, 2),
        "cpu_cores": cpu,
        "errors": bad,
        "marker_hits": result.marker_hits,
        # CPU per request is steadier than the rate when other work shares the machine.
        "cpu_ms_per_request": {k: round(v / result.rate * 1000, 3) if result.rate else None for k, v in cpu.items()},
    }
    if bad:
        row["sample"] = [b.decode(errors="replace") for b in result.bodies_sample]
    print(json.dumps(row), flush=True)
    return row


def spiffe_ids(tokens: list[str]) -> dict[str, str]:
    import jwt

    return {t: jwt.decode(t, options={"verify_signature": False})["sub"] for t in tokens}


def evaluation(token: str, spiffe_id: str) -> dict:
    return {
        "subject": {"type": "agent", "id": spiffe_id, "properties": {"token": token}},
        "action": {"name": "github:write"},
        "resource": {"type": "repo", "id": "acme/api"},
        "context": {"ticket": "B-1"},
    }


def batch(token: str, spiffe_id: str) -> dict:
    """A gateway's batch: one subject and action, fifty resources."""
    return {
        "subject": {"type": "agent", "id": spiffe_id, "properties": {"token": token}},
        "action": {"name": "github:write"},
        "context": {"ticket": "B-1"},
        "evaluations": [{"resource": {"type": "repo", "id": f"acme/svc-{k}"}} for k in range(BATCH)],
    }


def raw_verification_rate(tokens: list[str], seconds: float) -> float:
    from identities.credential_jwt import verify_access_token

    for token in tokens:
        verify_access_token(token)  # load keys
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        verify_access_token(tokens[n % len(tokens)])
        n += 1
    return n / (time.perf_counter() - started)


def event_rows(tokens: list[str], size: int) -> tuple[list[dict], list[tuple]]:
    """A batch as a gateway sends it, and the same rows as the service stores them."""
    from django.utils import timezone

    from identities.credential_jwt import verify_access_token
    from identities.models import Credential

    now = timezone.now()
    creds = {}
    for token in tokens:
        jti = verify_access_token(token).jti
        creds[token] = Credential.objects.select_related("instance").get(jti=jti)
    events, rows = [], []
    for i in range(size):
        token = tokens[i % len(tokens)]
        events.append(
            {
                "kind": "tool_call",
                "scope": "github:write",
                "resource": f"repo:acme/svc-{i % 50}",
                "outcome": "success",
                "occurred_at": now.isoformat(),
                "details": {"tool": "git", "n": i},
                "token": token,
            }
        )
        cred = creds[token]
        rows.append(
            (
                "tool_call",
                cred.instance.agent_id,
                cred.instance_id,
                cred.envelope_id,
                cred.jti,
                "github:write",
                f"repo:acme/svc-{i % 50}",
                None,
                "",
                "success",
                False,
                "",
                json.dumps({"tool": "git", "n": i}),
                now,
                now,
                "gateway",
            )
        )
    return events, rows


def raw_copy_rate(rows: list[tuple], seconds: float) -> float:
    """COPY the same rows, one transaction per batch, as fast as one connection goes."""
    from django.db import connection, transaction

    from tasks.activity import _COLUMNS
    from tasks.models import ActivityEvent

    table = ActivityEvent._meta.db_table
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        with (
            transaction.atomic(),
            connection.cursor() as cursor,
            cursor.cursor.copy(f"COPY {table} ({', '.join(_COLUMNS)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        n += len(rows)
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--worker-class",
        default="gthread",
        choices=["gthread", "sync"],
        help="gunicorn's worker class (sync: gunicorn.conf.py's, one request per process, no keep-alive)",
    )
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--envelopes", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase (at most 60)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--runs", type=int, default=3, help="measured runs (median and spread are reported)")
    parser.add_argument("--skip-events", action="store_true", help="leave out the events phases")
    args = parser.parse_args()
    args.duration = min(args.duration, 60.0)
    base_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    if not base_url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("DATABASE_URL must name a PostgreSQL server (the bench creates its own database there)")

    database_url = scratch_database(base_url, args.keep)
    data_dir = tempfile.mkdtemp(prefix="mandate-bench-")
    env = configure_environment(database_url, data_dir)
    tokens, api_token = seed(args.envelopes)
    server, port = start_server(env, workers=args.workers, threads=args.threads, worker_class=args.worker_class)
    meter = CpuMeter(server.pid)
    summary = {
        "config": {
            "workers": args.workers,
            "threads": args.threads,
            "worker_class": args.worker_class,
            "connections": args.connections,
            "envelopes": args.envelopes,
            "duration_s": args.duration,
            "cores": os.cpu_count(),
            "load_average_at_start": os.getloadavg(),
        }
    }
    print(json.dumps(summary["config"]), flush=True)
    try:
        from django.db import connection

        auth = {"Authorization": f"Bearer {api_token}"}
        healthz = [loadgen.build_request("GET", "/healthz")]
        spiffe = spiffe_ids(tokens)
        endpoints = {
            "POST /api/v1/decisions": (
                [
                    loadgen.build_request(
                        "POST",
                        "/api/v1/decisions",
                        json.dumps(
                            {
                                "token": t,
                                "scope": "github:write",
                                "resource": "repo:acme/api",
                                "context": {"ticket": "B-1"},
                            }
                        ).encode(),
                        auth,
                    )
                    for t in tokens
                ],
                b'"allow":true',
                1,
            ),
            "POST /access/v1/evaluation": (
                [
                    loadgen.build_request(
                        "POST", "/access/v1/evaluation", json.dumps(evaluation(t, spiffe[t])).encode(), auth
                    )
                    for t in tokens
                ],
                b'"decision":true',
                1,
            ),
            f"POST /access/v1/evaluations ({BATCH} per request)": (
                [
                    loadgen.build_request(
                        "POST", "/access/v1/evaluations", json.dumps(batch(t, spiffe[t])).encode(), auth
                    )
                    for t in tokens
                ],
                b'"decision":true',
                BATCH,
            ),
        }

        def decision_events() -> int:
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM tasks_activityevent WHERE kind = 'decision'")
                return cursor.fetchone()[0]

        served = {}
        for name, (requests, marker, _per) in endpoints.items():
            warm = phase(
                f"warm-up {name}", meter, port, requests, connections=args.connections, duration=2, marker=marker
            )
            served[name] = not warm["errors"]  # absent from an older commit: its row stays empty
        recorded_before = decision_events()
        answered = 0
        runs = {name: [] for name in ["GET /healthz", *endpoints]}
        for run in range(args.runs):
            hz = phase(
                f"healthz #{run + 1}", meter, port, healthz, connections=args.connections, duration=args.duration
            )
            base = {
                "healthz_rate": hz["per_s"],
                "healthz_server_cpu_ms": hz["cpu_ms_per_request"]["server"],
            }
            runs["GET /healthz"].append({**base, **_figures(hz, None, 1)})
            for name, (requests, marker, per) in endpoints.items():
                if not served[name]:
                    continue
                full = phase(
                    f"{name} full #{run + 1}",
                    meter,
                    port,
                    requests,
                    connections=args.connections,
                    duration=args.duration,
                    marker=marker,
                )
                half = phase(
                    f"{name} half #{run + 1}",
                    meter,
                    port,
                    requests,
                    connections=args.connections,
                    duration=args.duration,
                    rate=full["per_s"] / 2,
                    marker=marker,
                )
                answered += (full["requests"] + half["requests"]) * per
                figures = {**base, **_figures(full, half, per)}
                if per == 1:
                    # A server's CPU per request depends on the request rate (at a low rate each request
                    # wakes a sleeping thread and the poller; at a high one they share the wake-ups), so
                    # /healthz is also measured at this endpoint's own rate, open loop.
                    same = phase(
                        f"healthz at the rate of {name} #{run + 1}",
                        meter,
                        port,
                        healthz,
                        connections=args.connections,
                        duration=args.duration,
                        rate=full["per_s"],
                    )
                    figures["healthz_same_rate_server_cpu_ms"] = same["cpu_ms_per_request"]["server"]
                runs[name].append(figures)
        recorded = decision_events() - recorded_before
        summary["durability"] = {"answered_decisions": answered, "recorded_decisions": recorded}
        summary["runs"] = runs
        print(json.dumps({"durability": summary["durability"]}), flush=True)

        verify_rate = raw_verification_rate(tokens, min(args.duration, 3))
        summary["raw_verify_per_s_one_core"] = round(verify_rate)

        if not args.skip_events:
            for size in (100, 1000):
                events, rows = event_rows(tokens, size)
                body = json.dumps({"events": events}).encode()
                requests = [loadgen.build_request("POST", "/api/v1/events", body, auth)]
                row = phase(f"events-{size}", meter, port, requests, connections=4, duration=args.duration)
                row["events_per_s"] = round(row["per_s"] * size)
                row["raw_copy_events_per_s"] = round(raw_copy_rate(rows, min(args.duration, 3)))
                summary[f"events_{size}"] = row
        connection.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)

    rows = [
        report.Row("GET /healthz", runs["GET /healthz"], "baseline"),
        report.Row(
            "POST /api/v1/decisions",
            runs["POST /api/v1/decisions"],
            "rate >= 0.5x /healthz, server CPU <= 2x /healthz's at the same rate, p99 half <= 10 ms",
            _single_goal,
        ),
        report.Row(
            "POST /access/v1/evaluation",
            runs["POST /access/v1/evaluation"],
            "rate >= 0.5x /healthz, server CPU <= 2x /healthz's at the same rate, p99 half <= 10 ms",
            _single_goal,
        ),
        report.Row(
            f"POST /access/v1/evaluations, per decision ({BATCH} per request; latencies per request)",
            runs[f"POST /access/v1/evaluations ({BATCH} per request)"],
            ">= 10,000 decisions/s",
            lambda m: m["rate"] >= 10_000,
        ),
    ]
    report.save_runs(rows, label="decisions")
    print()
    print(report.table(rows, title="decisions"))
    print()
    print(f"raw ES256 verification, one process: {summary['raw_verify_per_s_one_core']}/s")
    d = summary["durability"]
    print(
        f"answered {d['answered_decisions']} decisions, recorded {d['recorded_decisions']}"
        f" -> {'every answer on record' if d['recorded_decisions'] >= d['answered_decisions'] else 'MISSING RECORDS'}"
    )
    if not args.skip_events:
        print("events (target >= 60,000/s):")
        for size in (100, 1000):
            row = summary[f"events_{size}"]
            print(
                f"  batches of {size:<5} endpoint {row['events_per_s']:>8}/s   "
                f"raw COPY {row['raw_copy_events_per_s']:>8}/s   "
                f"ratio {row['events_per_s'] / row['raw_copy_events_per_s']:.2f}   p99 {row['p99_ms']:.1f} ms"
            )
    print(
        f"load average at start {summary['config']['load_average_at_start']}, at end {os.getloadavg()} "
        "(other work on the machine skews every figure)"
    )
    if not args.keep:
        drop_database(base_url)
    Path(data_dir, "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"details: {Path(data_dir, 'summary.json')}")


def _figures(full: dict, half: dict | None, per: int) -> dict:
    """One run of one endpoint in the table's units: ``per`` decisions per request."""
    cpu = full["cpu_ms_per_request"]
    return {
        "rate": full["per_s"] * per,
        "full_p50": full["p50_ms"],
        "full_p99": full["p99_ms"],
        "half_p50": half["p50_ms"] if half else float("nan"),
        "half_p99": half["p99_ms"] if half else float("nan"),
        "server_cpu_ms": cpu["server"] / per if cpu["server"] is not None else float("nan"),
        "postgres_cpu_ms": cpu["postgres"] / per if cpu["postgres"] is not None else float("nan"),
    }


def _single_goal(m: dict) -> bool:
    """The CPU goal is judged against /healthz served at the same rate (see report.medians)."""
    return m["ratio"] >= 0.5 and m["cpu_ratio_same_rate"] <= 2 and m["half_p99"] <= 10


if __name__ == "__main__":
    main()
