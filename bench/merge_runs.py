#!/usr/bin/env python
"""Table the runs that several bench invocations appended to one file (``MANDATE_BENCH_RUNS_OUT``):

    MANDATE_BENCH_RUNS_OUT=runs.jsonl MANDATE_BENCH_LABEL=before .venv/bin/python bench/bench_decisions.py --runs 1
    MANDATE_BENCH_RUNS_OUT=runs.jsonl MANDATE_BENCH_LABEL=after  .venv/bin/python bench/bench_decisions.py --runs 1
    ... (alternating) ...
    .venv/bin/python bench/merge_runs.py runs.jsonl

One table per label, each row the median (min-max) of that label's runs, as ``report.table`` prints.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report


def main() -> None:
    by_label: dict[str, dict[str, report.Row]] = {}
    loads: dict[str, list[float]] = {}
    for line in Path(sys.argv[1]).read_text().splitlines():
        entry = json.loads(line)
        rows = by_label.setdefault(entry["label"], {})
        loads.setdefault(entry["label"], []).append(entry["load_average"][0])
        for row in entry["rows"]:
            known = rows.get(row["endpoint"])
            runs = [*(known.runs if known else []), *row["runs"]]
            rows[row["endpoint"]] = report.Row(row["endpoint"], runs, row["goal"])
    for label, rows in by_label.items():
        print(report.table(list(rows.values()), title=label))
        print(f"1-minute load average at the end of each invocation: {loads[label]}")
        print()


if __name__ == "__main__":
    main()
