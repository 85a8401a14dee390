"""The beat schedule: every sweep in one place, on the scheduled queue, staggered, expiring
before its next run, with a soft time limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.conf import settings

from console.celery import app
from console.schedules import staggered


def test_every_beat_entry_goes_to_the_scheduled_queue_and_expires_before_its_next_run():
    assert settings.CELERY_BEAT_SCHEDULE
    app.loader.import_default_modules()  # what a worker does at start: autodiscovery
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        interval = entry["schedule"].run_every.total_seconds()
        options = entry["options"]
        assert options["queue"] == settings.MANDATE_SCHEDULED_QUEUE, name
        assert 0 < options["expires"] < interval, name
        assert 0 < options["soft_time_limit"] < options["time_limit"], name
        assert entry["task"] in app.tasks, f"{name}: {entry['task']} is not a registered task"
        assert app.amqp.router.route({}, entry["task"])["queue"].name == settings.MANDATE_SCHEDULED_QUEUE


def test_sweeps_with_the_same_interval_fire_at_different_seconds():
    slots = {}
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        key = (entry["schedule"].run_every, entry["schedule"].offset)
        assert key not in slots, f"{name} fires together with {slots.get(key)}"
        slots[key] = name


class _At(staggered):
    def __init__(self, *args, now, **kwargs):
        super().__init__(*args, **kwargs)
        self._now = now

    def now(self):
        return self._now


def test_a_staggered_schedule_is_due_once_per_slot_at_its_offset():
    base = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    before_slot = _At(60, 17, now=base + timedelta(seconds=16))
    assert before_slot.is_due(base) == (False, 1.0)
    after_slot = _At(60, 17, now=base + timedelta(seconds=18))
    due, next_in = after_slot.is_due(base)
    assert due and next_in == 59.0
    # Once it ran in this slot, it waits for the next one.
    assert after_slot.is_due(base + timedelta(seconds=17, milliseconds=500))[0] is False


def test_a_staggered_schedule_survives_the_beat_schedule_file():
    import pickle

    entry = staggered(120, 43)
    copy = pickle.loads(pickle.dumps(entry))
    assert copy == entry and copy.offset == 43
