"""Limits lifted for benches that mint thousands of credentials from one client under one envelope:
the default policy's ``[credentials] max_live = 10`` would refuse the 11th, and the per-client rate
limit at /oauth/token the 121st in a minute.

Only the ceilings move; the checks still run on every request (the cap's count over every
credential the bench left live, the rate limiter's shared counter), so the figures include their
cost — on the pessimistic side, since a capped deployment counts at most ten live credentials.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNCAPPED = 10_000  # the most the policy loader accepts
RATE = 100_000_000  # per minute: never reached, still counted


def use_bench_limits() -> str:
    """Copy the policy folder with the cap raised; point this process (and the servers it starts,
    through the environment) at the copy. Returns the folder."""
    source = Path(os.environ.get("MANDATE_POLICY_DIR") or ROOT / "policy")
    target = Path(tempfile.mkdtemp(prefix="mandate-bench-policy-"))
    shutil.copytree(source, target, dirs_exist_ok=True)
    lifecycle = target / "lifecycle.toml"
    text, count = re.subn(r"(?m)^max_live\s*=\s*\d+", f"max_live = {UNCAPPED}", lifecycle.read_text())
    if count > 1:
        raise SystemExit(f"bench: expected at most one max_live line in {lifecycle}")
    lifecycle.write_text(text)  # no such line: a version from before the cap (benches of old commits)
    os.environ["MANDATE_POLICY_DIR"] = str(target)
    for name in (
        "MANDATE_RATE_TOKEN_PER_ADDRESS",
        "MANDATE_RATE_TOKEN_PER_CLIENT",
        "MANDATE_RATE_INTROSPECT_PER_ADDRESS",
        "MANDATE_RATE_INTROSPECT_PER_CLIENT",
    ):
        os.environ[name] = str(RATE)
    return str(target)
