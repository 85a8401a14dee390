"""``Instance.last_seen_at``, written coalesced: the token endpoint and the decision path both see
instances on every call, so each writes at most once per granularity, conditionally, and an
instance seen again stops being stale."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from identities.models import Instance

LAST_SEEN_GRANULARITY = timedelta(seconds=30)

_seen_memo: dict[uuid.UUID, float] = {}


def _due(now: datetime) -> Q:
    """Rows whose ``last_seen_at`` is worth writing at ``now``."""
    return Q(last_seen_at__isnull=True) | Q(last_seen_at__lt=now - LAST_SEEN_GRANULARITY) | Q(stale=True)


def touch_instance(instance: Instance, now: datetime) -> None:
    """For a loaded instance (the decision path): its own ``last_seen_at`` says whether to write."""
    seen = instance.last_seen_at
    if seen is not None and now - seen < LAST_SEEN_GRANULARITY and not instance.stale:
        return
    Instance.objects.filter(pk=instance.pk).filter(_due(now)).update(last_seen_at=now, stale=False, stale_since=None)
    instance.last_seen_at, instance.stale = now, False


def note_instance_seen(instance_id: uuid.UUID, *, now: datetime | None = None) -> None:
    """For an instance known by id (the token endpoint): a per-process memo says whether to write."""
    clock = time.monotonic()
    if clock - _seen_memo.get(instance_id, -1e9) < LAST_SEEN_GRANULARITY.total_seconds():
        return
    _seen_memo[instance_id] = clock
    if len(_seen_memo) > 50_000:
        _seen_memo.clear()
    now = now or timezone.now()
    Instance.objects.filter(pk=instance_id).filter(_due(now)).update(last_seen_at=now, stale=False, stale_since=None)
