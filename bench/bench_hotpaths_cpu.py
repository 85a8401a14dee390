#!/usr/bin/env python
"""In-process CPU cost of the two hot paths, beside /healthz, measured in one process.

    MANDATE_TESTING=1 .venv/bin/python bench/bench_hotpaths_cpu.py [-n 400]
    MANDATE_TESTING=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/mandate_x \\
        .venv/bin/python bench/bench_hotpaths_cpu.py

Creates a throw-away test database (``test_<name>`` next to DATABASE_URL's, or in-memory SQLite),
seeds one agent, instances with their own Ed25519 keys and approved envelopes, then times N calls of
each through the Django test Client: ``POST /oauth/token`` (a fresh signed client assertion each,
signed before the clock starts), ``POST /api/v1/decisions`` (gateway Bearer token), the same call as
an AuthZEN ``POST /access/v1/evaluation``, a ``POST /access/v1/evaluations`` of 50 (reported per
item), ``POST /oauth/introspect`` (gateway Bearer token) and ``GET /healthz``.
It reports ``time.process_time()`` per request, which is this process's CPU, so a busy machine
skews it far less than wall-clock rates; on a PostgreSQL server on this machine, beside it, the CPU
of the backend serving the connection and of the WAL writer in the same round.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
os.environ.setdefault("MANDATE_TESTING", "1")
sys.path.insert(0, str(ROOT / "bench"))
import procstat  # noqa: E402
from limits import use_bench_limits  # noqa: E402

use_bench_limits()  # the rounds mint hundreds under one envelope; the cap would refuse the 11th
BATCH = 50  # evaluations per AuthZEN batch, as the goal counts them


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="calls per path and round (default 300)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the best round is reported")
    parser.add_argument(
        "--profile",
        choices=["mint", "decision", "batch", "introspect"],
        help="print a pyinstrument profile of one path",
    )
    parser.add_argument(
        "--profiler",
        choices=["pyinstrument", "none", "postgres-stages", "postgres-statements"],
        default="pyinstrument",
        help="with --profile: none runs the path alone, for a sampler outside the process "
        "(py-spy record --format raw -- …), which sees CPU without pyinstrument's own cost; "
        "postgres-stages / postgres-statements print PostgreSQL's own CPU per statement, parse and "
        "plan apart or whole, from its server log (bench/pgstats.py; a PostgreSQL on this machine, "
        "its log readable)",
    )
    parser.add_argument("--pg-log", default=None, help="PostgreSQL's server log (default: Debian's for 15)")
    args = parser.parse_args()

    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        run(args.n, args.rounds, args.profile, args.profiler, args.pg_log)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def run(
    n: int, rounds: int, profile: str | None = None, profiler_name: str = "pyinstrument", pg_log: str | None = None
) -> None:
    from urllib.parse import urlencode

    import jwt
    from django.contrib.auth.models import Group, User
    from django.db import connection
    from django.test import Client

    from accounts.models import ApiToken
    from accounts.roles import AGENT_OWNER, GATEWAY, IDENTITY_ADMIN
    from identities import keys
    from tasks import services as task_services
    from tests.helpers.factories import make_agent, make_envelope, make_instance

    def user(name, role):
        account = User.objects.create_user(name, f"{name}@bench.test", "x" * 20)
        account.groups.add(Group.objects.get_or_create(name=role)[0])
        return account

    owner, admin, gateway = user("owner", AGENT_OWNER), user("admin", IDENTITY_ADMIN), user("gateway", GATEWAY)
    secret = ApiToken.new_secret()
    ApiToken.objects.create(user=gateway, name="bench", prefix=secret[:8], digest=ApiToken.digest_of(secret))
    keys.rotate_signing_key(actor=None, immediately=True)
    agent = make_agent(owner)
    instance = make_instance(agent)
    envelope = make_envelope(
        instance,
        scopes=("github:write", "github:read"),
        resources=("repo:acme/*",),
        duration_seconds=4 * 3600,
        max_actions=1_000_000,
    )
    task_services.approve_envelope(envelope=envelope, actor=admin)

    client = Client()
    token_url = "http://testserver/oauth/token"

    def forms(count):
        now = int(time.time())
        out = []
        for _ in range(count):
            assertion = jwt.encode(
                {
                    "iss": instance.spiffe_id,
                    "sub": instance.spiffe_id,
                    "aud": token_url,
                    "iat": now,
                    "exp": now + 240,
                    "jti": uuid.uuid4().hex,
                },
                instance.private_key,
                algorithm="EdDSA",
            )
            out.append(
                urlencode(
                    {
                        "grant_type": "client_credentials",
                        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                        "client_assertion": assertion,
                        "envelope": str(envelope.id),
                    }
                )
            )
        return out

    def mint_once(body):
        response = client.post("/oauth/token", body, content_type="application/x-www-form-urlencoded")
        assert response.status_code == 200, response.content
        return response

    access_token = mint_once(forms(1)[0]).json()["access_token"]
    decision_body = {"token": access_token, "scope": "github:write", "resource": "repo:acme/api"}
    auth = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}

    def decide():
        response = client.post("/api/v1/decisions", decision_body, content_type="application/json", **auth)
        assert response.status_code == 200 and response.json()["allow"], response.content

    evaluation_body = {
        "subject": {"type": "agent", "id": instance.spiffe_id, "properties": {"token": access_token}},
        "action": {"name": "github:write"},
        "resource": {"type": "repo", "id": "acme/api"},
    }
    batch_body = {
        "subject": evaluation_body["subject"],
        "action": evaluation_body["action"],
        "evaluations": [{"resource": {"type": "repo", "id": f"acme/svc-{k}"}} for k in range(BATCH)],
    }

    def evaluate():
        response = client.post("/access/v1/evaluation", evaluation_body, content_type="application/json", **auth)
        assert response.status_code == 200 and response.json()["decision"], response.content

    def evaluate_batch():
        response = client.post("/access/v1/evaluations", batch_body, content_type="application/json", **auth)
        assert response.status_code == 200 and all(e["decision"] for e in response.json()["evaluations"])

    introspection_body = urlencode({"token": access_token})

    def introspect():
        response = client.post(
            "/oauth/introspect", introspection_body, content_type="application/x-www-form-urlencoded", **auth
        )
        assert response.status_code == 200 and response.json()["active"], response.content

    def health():
        response = client.get("/healthz")
        assert response.status_code == 200

    # On PostgreSQL on this machine, the CPU of the backend serving this process's connection and
    # of the WAL writer is counted too (one client: nothing else runs on them meanwhile).
    database_pids: list[int] = []
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            database_pids = [cursor.fetchone()[0], *procstat.postgres_pids()]
    database_ms: dict[str, float] = {}

    def timed(fn, items, name=None, per=1):
        database = procstat.run_seconds(database_pids)
        start = time.process_time()
        for item in items:
            fn(item)
        spent = (time.process_time() - start) * 1000 / len(items) / per
        if name is not None and database_pids:
            ms = (procstat.run_seconds(database_pids) - database) * 1000 / len(items) / per
            if spent < best[name]:  # the database's CPU of the best round
                database_ms[name] = ms
        return spent

    # An older commit (a "before" run) may not serve AuthZEN: leave its rows out.
    authzen = client.post("/access/v1/evaluation", {}, content_type="application/json", **auth).status_code != 404
    for _ in range(20):  # warm caches (keys, policy, token verification) before any clock starts
        decide()
        if authzen:
            evaluate()
            evaluate_batch()
        health()
    if profile:
        from contextlib import nullcontext

        bodies = forms(n)
        if profiler_name == "pyinstrument":
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0002)
        if profiler_name.startswith("postgres-"):
            import pgstats

            pg_log = pg_log or pgstats.DEFAULT_LOG
            log_from = pgstats.log_size(pg_log)
            with connection.cursor() as cursor:
                for statement in pgstats.settings_sql(profiler_name.removeprefix("postgres-")):
                    cursor.execute(statement)
        with profiler if profiler_name == "pyinstrument" else nullcontext():
            if profile == "mint":
                for body in bodies:
                    mint_once(body)
            elif profile == "introspect":
                for _ in range(n):
                    introspect()
            elif profile == "batch":
                for _ in range(max(n // BATCH, 1)):
                    evaluate_batch()
            else:
                for _ in range(n):
                    decide()
        if profiler_name == "pyinstrument":
            print(profiler.output_text(unicode=False, color=False, show_all=False))
        elif profiler_name.startswith("postgres-"):
            operations = max(n // BATCH, 1) if profile == "batch" else n
            print(pgstats.report(pg_log, log_from, operations))
        return
    names = ("mint", "introspection", "decision", "evaluation", f"batch/{BATCH} per item", "healthz")
    best = {name: float("inf") for name in names}
    batches = max(n // BATCH, 1)
    for _ in range(rounds):
        bodies = forms(n)
        best["mint"] = min(best["mint"], timed(mint_once, bodies, "mint"))
        best["introspection"] = min(best["introspection"], timed(lambda _: introspect(), range(n), "introspection"))
        best["decision"] = min(best["decision"], timed(lambda _: decide(), range(n), "decision"))
        if authzen:
            best["evaluation"] = min(best["evaluation"], timed(lambda _: evaluate(), range(n), "evaluation"))
            item = f"batch/{BATCH} per item"
            best[item] = min(best[item], timed(lambda _: evaluate_batch(), range(batches), item, per=BATCH))
        best["healthz"] = min(best["healthz"], timed(lambda _: health(), range(n), "healthz"))
    print(f"database: {connection.vendor}, n={n} x {rounds} rounds (best round), CPU ms per request in this process")
    for name, value in best.items():
        if value == float("inf"):
            continue
        database = f"   PostgreSQL {database_ms[name]:6.3f} ms" if name in database_ms else ""
        print(f"  {name:18s} {value:7.3f} ms   ({value / best['healthz']:5.2f}x healthz){database}")


if __name__ == "__main__":
    main()
