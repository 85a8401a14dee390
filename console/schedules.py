"""A beat schedule that runs on fixed wall-clock slots with an offset, so sweeps with the same
interval do not all fire in the same second (``celery.schedules.schedule`` starts every entry
when beat starts, which lines them all up)."""

from __future__ import annotations

import math
from datetime import timedelta

from celery.schedules import schedule


class staggered(schedule):
    """Due at every ``offset + k * run_every`` seconds past the epoch."""

    def __init__(self, run_every: float, offset: float = 0, app=None):
        self.offset = float(offset) % float(run_every)
        super().__init__(run_every=timedelta(seconds=run_every), app=app)

    def is_due(self, last_run_at):
        interval = self.run_every.total_seconds()
        now = self.now().timestamp()
        last_slot = math.floor((now - self.offset) / interval) * interval + self.offset
        next_in = max(last_slot + interval - now, 0.05)
        if self.maybe_make_aware(last_run_at).timestamp() < last_slot:
            return (True, next_in)
        return (False, next_in)

    def __repr__(self) -> str:
        return f"<staggered: every {self.run_every.total_seconds():g}s at +{self.offset:g}s>"

    def __reduce__(self):
        return self.__class__, (self.run_every.total_seconds(), self.offset)

    def __eq__(self, other):
        if isinstance(other, staggered):
            return self.run_every == other.run_every and self.offset == other.offset
        return NotImplemented

    def __hash__(self):
        return hash((self.run_every, self.offset))
