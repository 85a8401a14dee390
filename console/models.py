"""The console's own record: how the scheduled jobs ran (read by /metrics), and the rate-limit counts."""

from __future__ import annotations

from django.db import models

from core.sql import RATE_COUNTER_TABLE


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


class RateCounter(models.Model):
    """Hits of one rate-limit key in one window of the clock, when no Redis counts them
    (core/ratelimit.py; written and swept only through core.sql's statements). Unlogged on
    PostgreSQL: counts are not worth a durable commit, and a crash simply starts them afresh."""

    pk = models.CompositePrimaryKey("key", "slot")
    key = models.CharField(max_length=100)  # the limit's name and a digest of what it counts
    slot = models.BigIntegerField()  # which window: epoch seconds // window length
    n = models.IntegerField()
    expires = models.BigIntegerField(db_index=True)  # epoch seconds when the window has ended

    class Meta:
        db_table = RATE_COUNTER_TABLE

    def __str__(self) -> str:
        return f"{self.key}@{self.slot}: {self.n}"
