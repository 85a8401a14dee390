"""The table both hot-path benches print: every figure as the median of several runs with its spread,
and the throughput as a ratio to ``/healthz`` measured by the same load generator against the same
server in the same run (single runs on a shared 2-core machine vary too much to mean anything alone).
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One endpoint's runs. Each run is a dict with ``rate`` (per second, of the unit the goal counts),
    ``full_p50``/``full_p99``/``half_p50``/``half_p99`` (ms), ``server_cpu_ms``/``postgres_cpu_ms`` per
    request, and ``healthz_rate`` of the same run."""

    endpoint: str
    runs: list[dict]
    goal: str = ""
    met: object = None  # callable(medians: dict) -> bool, or None when there is no goal


def _median_spread(values: list[float]) -> tuple[float, float, float]:
    clean = [v for v in values if v == v]  # drop NaN
    if not clean:
        return float("nan"), float("nan"), float("nan")
    return statistics.median(clean), min(clean), max(clean)


def _ratios(row: Row, numerator: str, denominator: str) -> tuple[float, float, float]:
    """The median (min, max) over the runs of ``run[numerator] / run[denominator]`` (NaN where the
    run has no denominator)."""
    return _median_spread(
        [run[numerator] / run[denominator] if run.get(denominator) else float("nan") for run in row.runs]
    )


def medians(row: Row) -> dict:
    keys = ("rate", "full_p50", "full_p99", "half_p50", "half_p99", "server_cpu_ms", "postgres_cpu_ms")
    out = {key: _median_spread([run.get(key, float("nan")) for run in row.runs]) for key in keys}
    out["ratio"] = _ratios(row, "rate", "healthz_rate")
    out["cpu_ratio"] = _ratios(row, "server_cpu_ms", "healthz_server_cpu_ms")
    # The same comparison with /healthz served at this endpoint's own request rate: gunicorn's CPU per
    # request falls as the rate rises (wake-ups shared), so comparing with /healthz at its far higher
    # closed-loop rate charges the endpoint for being slower, not for its own work.
    out["cpu_ratio_same_rate"] = _ratios(row, "server_cpu_ms", "healthz_same_rate_server_cpu_ms")
    return out


def _fmt(triple: tuple[float, float, float], spec: str) -> str:
    mid, low, high = triple
    if mid != mid:
        return "-"
    if low == high:
        return format(mid, spec)
    return f"{format(mid, spec)} ({format(low, spec)}-{format(high, spec)})"


def table(rows: list[Row], *, title: str) -> str:
    """A Markdown table (readable as text, pasteable into docs/benchmarks.md)."""
    lines = [
        f"### {title}",
        "",
        "median of the runs (min-max); rate and p50/p99 at full load (closed loop), p50/p99 at half that "
        "rate (open loop, latency from when each request was due); CPU per request of the server's "
        "processes and of PostgreSQL; ratio = rate / /healthz of the same run; server CPU is compared with "
        "/healthz's at its full load and with /healthz's served open loop at the endpoint's own rate.",
        "",
        "| endpoint | rate /s | p50 full ms | p99 full ms | p50 half ms | p99 half ms | CPU server ms"
        " | CPU PostgreSQL ms | server CPU / /healthz | server CPU / /healthz at the same rate | rate / /healthz"
        " | goal | met |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        m = medians(row)
        # A row the measured commit does not serve (a "before" run) has no runs: no verdict either.
        judged = row.met is not None and row.runs
        verdict = ("yes" if row.met({k: v[0] for k, v in m.items()}) else "**no**") if judged else ""
        lines.append(
            f"| {row.endpoint} | {_fmt(m['rate'], '.0f')} | {_fmt(m['full_p50'], '.1f')} | {_fmt(m['full_p99'], '.1f')}"
            f" | {_fmt(m['half_p50'], '.1f')} | {_fmt(m['half_p99'], '.1f')} | {_fmt(m['server_cpu_ms'], '.2f')}"
            f" | {_fmt(m['postgres_cpu_ms'], '.2f')} | {_fmt(m['cpu_ratio'], '.2f')}"
            f" | {_fmt(m['cpu_ratio_same_rate'], '.2f')} | {_fmt(m['ratio'], '.2f')}"
            f" | {row.goal} | {verdict} |"
        )
    lines.append("")
    lines.append(f"{len(rows[0].runs) if rows else 0} runs.")
    return "\n".join(lines)


def save_runs(rows: list[Row], *, label: str) -> None:
    """With ``MANDATE_BENCH_RUNS_OUT`` set, append this invocation's runs to that file (one JSON line),
    so runs of separate invocations (before and after, alternating) are tabled together by
    ``bench/merge_runs.py``."""
    path = os.environ.get("MANDATE_BENCH_RUNS_OUT")
    if not path:
        return
    line = {
        "label": os.environ.get("MANDATE_BENCH_LABEL", label),
        "load_average": os.getloadavg(),
        "rows": [{"endpoint": r.endpoint, "goal": r.goal, "runs": r.runs} for r in rows],
    }
    with open(path, "a") as out:
        out.write(json.dumps(line) + "\n")
