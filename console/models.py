"""The console's own record: how the scheduled jobs ran (read by /metrics)."""

from __future__ import annotations

from django.db import models


class JobRun(models.Model):
    """One row per scheduled job: how often it ran, how long, how many rows it changed, when last.
    Written once per run by a Celery signal (console/job_runs.py), read by /metrics."""

    name = models.CharField(max_length=100, primary_key=True)
    runs = models.PositiveBigIntegerField(default=0)
    rows = models.PositiveBigIntegerField(default=0)
    total_seconds = models.FloatField(default=0.0)
    last_seconds = models.FloatField(default=0.0)
    last_finished_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.name
