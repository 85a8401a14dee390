"""core.memo.Expiring: the per-process memory the hot paths share (verified tokens, API callers)."""

from __future__ import annotations

from core import memo
from core.memo import Expiring


def test_a_value_is_remembered_until_its_seconds_are_up(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(memo.time, "monotonic", lambda: clock[0])
    remembered = Expiring(seconds=5.0, max_entries=10)
    remembered.put("k", "v")

    clock[0] = 104.9
    assert remembered.get("k") == "v"
    clock[0] = 105.0
    assert remembered.get("k") is None


def test_forget_and_clear():
    remembered = Expiring(seconds=60.0, max_entries=10)
    remembered.put("a", 1)
    remembered.put("b", 2)
    remembered.forget("a")
    remembered.forget("never-there")
    assert (remembered.get("a"), remembered.get("b")) == (None, 2)
    remembered.clear()
    assert remembered.get("b") is None


def test_when_full_it_forgets_everything_and_keeps_the_newest():
    remembered = Expiring(seconds=60.0, max_entries=3)
    for n in range(3):
        remembered.put(n, n)
    remembered.put("newest", "x")
    assert [remembered.get(n) for n in range(3)] == [None, None, None]
    assert remembered.get("newest") == "x"
