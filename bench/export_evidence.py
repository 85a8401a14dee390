"""Measure a background evidence export of N activity rows: wall time, rows/s and peak memory.

    MANDATE_DATA_DIR=/tmp/bench DEBUG=true python bench/export_evidence.py [rows]

Uses whatever database DATABASE_URL names (run it against a scratch database: it adds rows).
"""

import os
import resource
import sys
import time
import tracemalloc

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from django.core.management import call_command  # noqa: E402

from posture import export  # noqa: E402
from posture.models import ExportJob  # noqa: E402
from tasks.models import ActivityEvent  # noqa: E402


def main(rows: int) -> None:
    call_command("migrate", verbosity=0)
    auditor, _ = get_user_model().objects.get_or_create(username="bench-auditor")
    auditor.groups.add(Group.objects.get_or_create(name="auditor")[0])
    have = ActivityEvent.objects.count()
    if have < rows:
        t = time.perf_counter()
        ActivityEvent.objects.bulk_create(
            [
                ActivityEvent(kind="decision", scope="github:read", resource=f"repo:acme/r{i}", allow=True, reason="ok")
                for i in range(rows - have)
            ],
            batch_size=5000,
        )
        print(f"inserted {rows - have} rows in {time.perf_counter() - t:.1f} s")
    for fmt in ("jsonl", "csv"):
        job = ExportJob.objects.create(requested_by=auditor, kind="activity", format=fmt)
        tracemalloc.start()
        t = time.perf_counter()
        job = export.run_export(job.id)
        elapsed = time.perf_counter() - t
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        size = (export.export_dir() / job.file_name).stat().st_size
        print(
            f"{fmt}: {job.done} rows, {size / 1e6:.1f} MB in {elapsed:.1f} s "
            f"({job.done / elapsed:,.0f} rows/s, traced peak {peak / 1e6:.2f} MB, "
            f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3:.0f} MB)"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
