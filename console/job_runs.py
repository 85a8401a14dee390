"""Record each scheduled job's run (count, duration, rows changed, when) for /metrics.

Connected to Celery's task signals in console/celery.py; only the jobs beat schedules are recorded,
one upsert per run, so notification tasks cost nothing extra.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db.models import F
from django.utils import timezone

logger = logging.getLogger(__name__)
_started: dict[str, float] = {}


def _job_name(task_name: str) -> str | None:
    if task_name in settings.MANDATE_SWEEP_TASKS:
        return task_name.rsplit(".", 1)[-1]
    return None


def rows_of(result) -> int:
    """Sweeps answer a count, or a dict of counts (orphans: flagged and paused)."""
    if isinstance(result, bool):
        return 0
    if isinstance(result, int):
        return max(result, 0)
    if isinstance(result, dict):
        return sum(v for v in result.values() if isinstance(v, int) and not isinstance(v, bool) and v > 0)
    return 0


def task_started(task_id=None, task=None, **_kwargs) -> None:
    if task is not None and _job_name(task.name):
        _started[task_id] = time.perf_counter()


def task_finished(task_id=None, task=None, retval=None, state=None, **_kwargs) -> None:
    if task is None:
        return
    name = _job_name(task.name)
    started = _started.pop(task_id, None)
    if name is None or started is None:
        return
    record_run(name=name, seconds=time.perf_counter() - started, rows=rows_of(retval) if state == "SUCCESS" else 0)


def record_run(*, name: str, seconds: float, rows: int) -> None:
    from console.models import JobRun

    now = timezone.now()
    try:
        updated = JobRun.objects.filter(name=name).update(
            runs=F("runs") + 1,
            rows=F("rows") + rows,
            total_seconds=F("total_seconds") + seconds,
            last_seconds=seconds,
            last_finished_at=now,
        )
        if not updated:
            JobRun.objects.get_or_create(
                name=name,
                defaults={
                    "runs": 1,
                    "rows": rows,
                    "total_seconds": seconds,
                    "last_seconds": seconds,
                    "last_finished_at": now,
                },
            )
    except Exception:  # the figures must never fail the job they describe
        logger.warning("could not record the run of %s", name, exc_info=True)
