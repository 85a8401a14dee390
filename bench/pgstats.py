"""PostgreSQL's own CPU per statement and per stage, from its server log: what
``bench_hotpaths_cpu.py --profile <path> --profiler postgres`` prints.

With ``log_parser_stats`` and ``log_planner_stats`` on (a superuser's session setting), the server
logs the CPU each statement spent being parsed, analysed, rewritten and planned; with
``log_statement_stats`` the whole statement (a prepared statement's BIND and EXECUTE messages
apart). ``log_min_error_statement = log`` names the statement beside each figure. The figures are
getrusage's, from inside the server, so neither the client nor the network is in them; turning the
statistics on adds a few microseconds to every stage.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

DEFAULT_LOG = "/var/log/postgresql/postgresql-15-main.log"
STAGE_SETTINGS = {
    "stages": ("log_parser_stats", "log_planner_stats"),
    "statements": ("log_statement_stats",),
}
_ENTRY = re.compile(r"\n(?=\S+ \S+ \S+ \[\d+\] \S* ?LOG:  )")
_STAGE = re.compile(r"LOG:  ([A-Z ]+?) STATISTICS")
_USAGE = re.compile(r"([\d.]+) s user, ([\d.]+) s system, ([\d.]+) s elapsed")
_STATEMENT = re.compile(r"STATEMENT:  (.*)")
_LITERAL = re.compile(r"'[^']*'")


def settings_sql(kind: str) -> list[str]:
    return [f"SET {name} = on" for name in STAGE_SETTINGS[kind]] + ["SET log_min_error_statement = log"]


def log_size(path: str = DEFAULT_LOG) -> int:
    return Path(path).stat().st_size


def report(path: str, since: int, operations: int) -> str:
    """A table of the server's CPU per operation, by stage and statement (literals folded, so the
    same statement with other values counts once), from the log written after offset ``since``."""
    with open(path, "rb") as log:
        log.seek(since)
        text = log.read().decode(errors="replace")
    totals: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0])
    for entry in _ENTRY.split(text):
        stage, usage, statement = _STAGE.search(entry), _USAGE.search(entry), _STATEMENT.search(entry)
        if not (stage and usage and statement):
            continue
        text_of = _LITERAL.sub("?", " ".join(statement.group(1).split()))[:100]
        total = totals[(stage.group(1), text_of)]
        total[0] += 1
        total[1] += float(usage.group(1)) + float(usage.group(2))
    everything = sum(cpu for _, cpu in totals.values())
    lines = [f"PostgreSQL CPU per operation: {everything / operations * 1e6:.0f} µs ({operations} operations)"]
    for (stage, statement), (count, cpu) in sorted(totals.items(), key=lambda item: -item[1][1]):
        if count >= operations / 2:  # what every operation sends, not a warm-up's one-off
            lines.append(f"{cpu / operations * 1e6:7.0f} µs  x{count / operations:.1f}  {stage:15s} {statement}")
    return "\n".join(lines)
