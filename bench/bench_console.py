"""Console list pages at scale: 100,000 envelopes and 1,000,000 activity events on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mandate_console_bench .venv/bin/python bench/bench_console.py

Bulk-loads the data once with server-side ``generate_series`` (a second run reuses it; ``--reset``
reloads), then renders each list page through the Django test client — views, selectors, queries
and templates, in process — and prints server time per page. Target: every list page ≤ 50 ms.
Bounded: the load takes a minute or two on two cores; each page is timed ``--repeat`` times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
os.environ.setdefault("MANDATE_TESTING", "1")  # dev secrets are fine for a bench

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import Group, User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402

from accounts.roles import AGENT_OWNER, AUDITOR, IDENTITY_ADMIN  # noqa: E402
from identities.models import Agent, Instance  # noqa: E402
from tasks.models import TaskEnvelope  # noqa: E402

OWNERS, AGENTS_PER_OWNER, INSTANCES_PER_AGENT = 20, 10, 2
TARGET_MS = 50.0


def load(envelopes: int, events: int, audit_rows: int) -> None:
    t0 = time.perf_counter()
    groups = {name: Group.objects.get_or_create(name=name)[0] for name in (IDENTITY_ADMIN, AGENT_OWNER, AUDITOR)}
    admin = User.objects.create_user("bench-admin", password="x")
    admin.groups.add(groups[IDENTITY_ADMIN])
    User.objects.create_user("bench-auditor", password="x").groups.add(groups[AUDITOR])
    owners = []
    for i in range(OWNERS):
        user = User.objects.create_user(f"bench-owner-{i:02d}", password="x")
        user.groups.add(groups[AGENT_OWNER])
        owners.append(user)
    agents = Agent.objects.bulk_create(
        [
            Agent(
                slug=f"bench-agent-{o:02d}-{a:02d}",
                name=f"Bench agent {o}/{a}",
                owner=owners[o],
                ceiling=["github:read", "github:write", "jira:read"],
                max_envelope_seconds=8 * 3600,
            )
            for o in range(OWNERS)
            for a in range(AGENTS_PER_OWNER)
        ]
    )
    instances = Instance.objects.bulk_create(
        [
            Instance(agent=agent, label=f"worker-{k}", key_thumbprint=f"{agent.slug}-{k}")
            for agent in agents
            for k in range(INSTANCES_PER_AGENT)
        ]
    )
    clones = [
        Instance(
            agent=i.agent, parent=i, origin=Instance.Origin.CLONE, label="clone", key_thumbprint=f"{i.key_thumbprint}-c"
        )
        for i in instances[::INSTANCES_PER_AGENT]
    ]
    Instance.objects.bulk_create(clones)
    with connection.cursor() as c:
        c.execute(
            "CREATE TEMP TABLE pick_i AS SELECT row_number() OVER (ORDER BY id) AS n, id, agent_id "
            "FROM identities_instance"
        )
        c.execute("SELECT count(*) FROM pick_i")
        n_inst = c.fetchone()[0]
        # States by share: 2% pending, 2% approved, 3% active, the rest ended. Live and pending rows are
        # recent, as the sweeps keep them; ended ones spread over a month, oldest first by id.
        c.execute(f"""
            INSERT INTO tasks_taskenvelope (id, state, risk, intent, scopes, resources, duration_seconds, max_actions,
                actions_used, may_delegate, delegation_depth, required_approvals, policy_version, auto_approved_by,
                created_at, approved_at, expires_at, ended_at, end_reason, drift_count, last_drift_at, stale,
                agent_id, instance_id, parent_envelope_id, requested_by_id, supersedes_id)
            SELECT gen_random_uuid(), s.state, (ARRAY['low','medium','high'])[1 + g % 3],
                'bench task ' || g, '["github:read","github:write"]'::jsonb, '["repo:acme/*"]'::jsonb,
                1800, 100, g % 100, false, 0, 1 + (g % 3 = 2)::int, 'bench', '',
                CASE WHEN s.live THEN now() - (g % 3000) * interval '1 second'
                     ELSE now() - ({envelopes} - g) * interval '25 seconds' END,
                CASE WHEN s.state IN ('pending','denied') THEN NULL ELSE now() - (g % 3000) * interval '1 second' END,
                CASE WHEN s.live THEN now() + (g % 3600) * interval '1 second'
                     WHEN s.state = 'pending' THEN NULL ELSE now() - ({envelopes} - g) * interval '20 seconds' END,
                CASE WHEN s.live OR s.state = 'pending' THEN NULL
                     ELSE now() - ({envelopes} - g) * interval '20 seconds' END,
                '', (g % 50 = 0)::int, NULL, false, p.agent_id, p.id, NULL, {owners[0].pk}, NULL
            FROM generate_series(1, {envelopes}) g
            -- hashed, so an instance's envelopes are not all in the same state
            JOIN pick_i p ON p.n = 1 + (hashint4(g)::bigint & 2147483647) % {n_inst}
            CROSS JOIN LATERAL (SELECT CASE
                WHEN g % 100 < 2 THEN 'pending' WHEN g % 100 < 4 THEN 'approved' WHEN g % 100 < 7 THEN 'active'
                WHEN g % 100 < 60 THEN 'completed' WHEN g % 100 < 80 THEN 'expired' WHEN g % 100 < 90 THEN 'revoked'
                WHEN g % 100 < 95 THEN 'denied' ELSE 'superseded' END AS state) st
            CROSS JOIN LATERAL (SELECT st.state AS state, st.state IN ('approved','active') AS live) s
        """)
        # Requested by the agent's owner, so scoping and separation of duties look real.
        c.execute(
            "UPDATE tasks_taskenvelope e SET requested_by_id = a.owner_id FROM identities_agent a "
            "WHERE a.id = e.agent_id"
        )
        c.execute(
            "CREATE TEMP TABLE pick_e AS SELECT row_number() OVER (ORDER BY id) AS n, id, agent_id, instance_id, "
            "state FROM tasks_taskenvelope"
        )
        c.execute("SELECT count(*) FROM pick_e")
        n_env = c.fetchone()[0]
        c.execute("""
            INSERT INTO identities_credential (jti, scopes, audience, issued_at, expires_at, status, revoked_at,
                revoke_reason, kid, act_chain, envelope_id, parent_id, instance_id)
            SELECT md5('live' || n), '["github:read"]'::jsonb, 'mandate', now(),
                now() + (n % 900) * interval '1 second',
                'active', NULL::timestamptz, '', 'bench', '[]'::jsonb, id, NULL::varchar, instance_id
            FROM pick_e WHERE state IN ('approved', 'active')
            UNION ALL
            SELECT md5('old' || n), '["github:read"]'::jsonb, 'mandate', now() - interval '2 days',
                now() - interval '2 days' + interval '5 minutes', 'expired', NULL, '', 'bench', '[]'::jsonb, id, NULL,
                instance_id
            FROM pick_e WHERE n % 2 = 0
        """)
        c.execute(f"""
            INSERT INTO tasks_activityevent (kind, jti, scope, resource, allow, reason, outcome, drift, policy_version,
                details, occurred_at, recorded_at, reported_by, agent_id, instance_id, envelope_id)
            SELECT (ARRAY['decision','decision','decision','decision','decision','decision','tool_call','tool_call',
                          'secret_access','privilege_escalation'])[1 + g % 10],
                '', (ARRAY['github:read','github:write','jira:read'])[1 + g % 3], 'repo:acme/app-' || (g % 50),
                g % 13 <> 0, CASE WHEN g % 13 = 0 THEN 'scope_not_granted' ELSE 'ok' END, '', g % 97 = 0,
                'bench', '{{}}'::jsonb,
                now() - ({events} - g) * interval '2.5 seconds', now() - ({events} - g) * interval '2.5 seconds',
                'bench-gateway', e.agent_id, e.instance_id, e.id
            FROM generate_series(1, {events}) g
            JOIN pick_e e ON e.n = 1 + (hashint4(g)::bigint & 2147483647) % {n_env}
            ORDER BY g.g
        """)
        c.execute(f"""
            INSERT INTO console_auditevent (chain, seq, at, actor_type, actor, verb, target_type, target_id,
                target_label, agent_id, before, after, reason, request_id, prev_hash, hash, actor_user_id)
            SELECT 'agent:' || a.id, g, now() - ({audit_rows} - g) * interval '8 seconds', 'user', 'bench-admin',
                (ARRAY['envelope.requested','envelope.approved','envelope.completed','credential.revoked',
                       'agent.paused'])[1 + g % 5],
                'envelope', g::text, 'bench row ' || g, a.id, '{{"state":"pending"}}'::jsonb,
                '{{"state":"approved"}}'::jsonb, '', '', repeat('0', 64), md5(g::text) || md5(g::text), NULL
            FROM generate_series(1, {audit_rows}) g
            JOIN (SELECT row_number() OVER (ORDER BY id) AS n, id FROM identities_agent) a
              ON a.n = 1 + g % {len(agents)}
            ORDER BY g.g
        """)
        c.execute("ANALYZE")
    print(f"loaded in {time.perf_counter() - t0:.1f} s")


def time_page(client: Client, url: str, repeat: int) -> tuple[list[float], int, int]:
    for _ in range(2):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
    queries = []

    def count(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        client.get(url)
    samples, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        response = client.get(url)
        samples.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    return samples, cpu, len(queries), len(response.content)


def sql_time(client: Client, url: str) -> float:
    """Milliseconds PostgreSQL itself spent executing the page's queries (EXPLAIN ANALYZE of each)."""
    captured = []

    def keep(execute, sql, params, many, context):
        captured.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(keep):
        client.get(url)
    total = 0.0
    with connection.cursor() as c:
        for sql, params in captured:
            if not sql.lstrip().upper().startswith("SELECT"):
                continue
            c.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
            plan = c.fetchone()[0]
            plan = plan[0] if isinstance(plan, list) else plan
            total += plan["Execution Time"] + plan.get("Planning Time", 0)
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envelopes", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--audit", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--reset", action="store_true", help="drop the bench data and load it again")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        print("Set DATABASE_URL to a PostgreSQL database (its own, e.g. mandate_console_bench).")
        return 2
    call_command("migrate", verbosity=0)
    if args.reset or not User.objects.filter(username="bench-admin").exists():
        if User.objects.exists():
            call_command("flush", interactive=False, verbosity=0)
        with transaction.atomic():  # all or nothing: a failed load leaves no half-loaded data behind
            load(args.envelopes, args.events, args.audit)
    with connection.cursor() as c:
        c.execute(
            "SELECT (SELECT count(*) FROM tasks_taskenvelope), (SELECT count(*) FROM tasks_activityevent), "
            "(SELECT count(*) FROM console_auditevent), (SELECT count(*) FROM identities_credential)"
        )
        n_env, n_act, n_audit, n_cred = c.fetchone()
    print(f"{n_env:,} envelopes, {n_act:,} activity events, {n_audit:,} audit events, {n_cred:,} credentials")

    admin = User.objects.get(username="bench-admin")
    owner = User.objects.get(username="bench-owner-03")
    auditor = User.objects.get(username="bench-auditor")
    agent = Agent.objects.filter(owner=owner).order_by("slug").first()
    envelope = TaskEnvelope.objects.filter(agent__owner=owner, state="active").order_by("id").first()
    with connection.cursor() as c:
        c.execute("SELECT id FROM tasks_activityevent ORDER BY id DESC OFFSET 500000 LIMIT 1")
        deep_activity = c.fetchone()[0]
    clients = {}
    for user in (admin, owner, auditor):
        client = Client(HTTP_HOST="localhost")
        client.force_login(user)
        clients[user.username] = client
    pages = [
        ("dashboard", admin, "/"),
        ("dashboard (owner)", owner, "/"),
        ("approval queue", admin, "/approvals/"),
        ("approval queue, high risk", admin, "/approvals/?risk=high"),
        ("agents", admin, "/agents/"),
        ("agents, search + status", admin, "/agents/?q=07&status=active"),
        ("agent detail", admin, f"/agents/{agent.slug}/"),
        ("my agents (owner)", owner, "/my-agents/"),
        ("envelope detail", owner, f"/envelopes/{envelope.id}/"),
        ("activity", admin, "/activity/"),
        ("activity (owner)", owner, "/activity/"),
        ("activity, drift only", auditor, "/activity/?drift=1"),
        ("activity, denied last 24 h", auditor, "/activity/?outcome=denied&since=24h"),
        ("activity, one agent", admin, f"/activity/?agent={agent.slug}"),
        ("activity, 500k rows deep", admin, f"/activity/?before={deep_activity}"),
        ("audit", auditor, "/audit/"),
        ("audit (owner)", owner, "/audit/"),
        ("audit, one verb", auditor, "/audit/?verb=agent.paused"),
        ("api tokens", owner, "/tokens/"),
    ]
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall times include waiting for CPU)")
    print(f"\n{'page':<30} {'median ms':>10} {'p95 ms':>8} {'cpu ms':>7} {'sql ms':>7} {'queries':>8} {'KiB':>6}")
    worst = 0.0
    for label, user, url in pages:
        samples, cpu, queries, size = time_page(clients[user.username], url, args.repeat)
        sql = sql_time(clients[user.username], url)
        median = statistics.median(samples)
        p95 = sorted(samples)[max(int(len(samples) * 0.95) - 1, 0)]
        worst = max(worst, median)
        flag = "" if median <= TARGET_MS else "  over target"
        print(
            f"{label:<30} {median:>10.1f} {p95:>8.1f} {statistics.median(cpu):>7.1f} {sql:>7.1f} {queries:>8} "
            f"{size / 1024:>6.0f}{flag}"
        )
    print(f"\nslowest median {worst:.1f} ms (target ≤ {TARGET_MS:.0f} ms)")
    return 0 if worst <= TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
