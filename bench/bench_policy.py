"""Rough per-call costs of the policy: load, classify, and the Cedar guardrails on every decision.

    MANDATE_TESTING=1 .venv/bin/python bench/bench_policy.py

No database: the guardrails read only the objects they are given. Figures are the median CPU time
of this process (process_time), which stays meaningful on a shared, busy machine.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
os.environ.setdefault("MANDATE_TESTING", "1")

import django

django.setup()

from django.conf import settings  # noqa: E402

from tasks.policy import active_policy, load_policy  # noqa: E402


def per_call_us(fn, n: int, rounds: int = 5) -> float:
    results = []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(n):
            fn()
        results.append((time.process_time() - start) / n * 1e6)
    return statistics.median(results)


def main() -> None:
    policy = active_policy()
    print(
        f"policy {policy.version}: {len(policy.scope_risk)} scopes, "
        f"{len(policy.guardrails.by_id) if policy.guardrails else 0} guardrails"
    )
    load = per_call_us(lambda: load_policy(Path(settings.MANDATE_POLICY_DIR)), 20)
    print(f"load_policy (read, parse, validate):   {load / 1000:8.2f} ms")
    classify = per_call_us(
        lambda: policy.classify(
            scopes=["github:read", "jira:read"],
            resources=["repo:acme/app"],
            duration_seconds=900,
            max_actions=100,
            may_delegate=False,
            delegation_depth=0,
        ),
        20000,
    )
    print(f"classify:                              {classify:8.1f} us")
    agent = SimpleNamespace(pk="1b7c5f5e-0000-4000-8000-000000000001", slug="db-janitor", owner_id=7, status="active")
    instance = SimpleNamespace(pk="1b7c5f5e-0000-4000-8000-000000000002", origin="registered", status="active")
    envelope = SimpleNamespace(
        pk="1b7c5f5e-0000-4000-8000-000000000003",
        risk="high",
        scopes=["secrets:read"],
        resources=["prod:*"],
        may_delegate=False,
        delegation_depth=0,
        max_actions=100,
        actions_used=3,
        policy_version=policy.version,
    )
    for label, resource, context in (
        ("allow (ticket given)", "prod:db-password", {"ticket": "CHG-1"}),
        ("forbid (no ticket)", "prod:db-password", {}),
        ("allow (not prod)", "staging:db-password", {}),
    ):
        cost = per_call_us(
            lambda r=resource, c=context: policy.guardrails_allow(
                instance=instance, agent=agent, envelope=envelope, scope="secrets:read", resource=r, context=c
            ),
            2000,
        )
        print(f"guardrails_allow, {label:22} {cost:8.1f} us")


if __name__ == "__main__":
    main()
