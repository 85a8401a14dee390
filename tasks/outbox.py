"""Notifications that survive a broker outage: written with the change, delivered at least once,
sent at most once per outbox row.

``enqueue`` runs inside the transaction that requests, approves, denies or expires an envelope; the
row commits or rolls back with it. After commit the row is handed to the broker off the request's
thread, so a broker that is down (or slow to refuse) never holds an approver's request. Whatever was
not delivered is handed over again by ``relay_outbox`` (a beat job, tasks/jobs.py) once the broker
answers again. The worker claims the row (locked, ``delivered_at`` still empty) before sending, so a
row published twice (by the request and by the relay) sends its mail once.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from tasks.models import OutboxMessage

logger = logging.getLogger(__name__)

# A row younger than this is left to its own after-commit publish; a published one is handed over
# again only after REPUBLISH_AFTER (a worker that is merely busy gets time to reach it).
RELAY_GRACE = timedelta(seconds=30)
REPUBLISH_AFTER = timedelta(minutes=5)
RELAY_BATCH = 500


def enqueue(*, kind: str, envelope_id: uuid.UUID) -> OutboxMessage:
    """Call inside the transaction of the change the notice is about."""
    message = OutboxMessage.objects.create(kind=kind, envelope_id=envelope_id)
    transaction.on_commit(lambda: publish_soon(message.id))
    return message


def publish_soon(message_id: uuid.UUID | str) -> None:
    if settings.CELERY_TASK_ALWAYS_EAGER:  # tests and single-process set-ups: deliver in line
        publish(message_id)
        return
    threading.Thread(target=_publish_in_thread, args=(message_id,), name="outbox-publish", daemon=True).start()


def _publish_in_thread(message_id: uuid.UUID | str) -> None:
    try:
        publish(message_id)
    finally:
        connection.close()  # this thread's own connection, if the eager path opened one


def publish(message_id: uuid.UUID | str) -> bool:
    """Hand one row to the broker; False (and a log line) if the broker cannot take it now."""
    from tasks.jobs import deliver_notice  # the job module imports this one

    try:
        # No publish retries: the relay is the retry, and it does not hold anybody's request.
        deliver_notice.apply_async(args=(str(message_id),), retry=False)
    except Exception as exc:
        logger.warning("broker unavailable (%s); notice %s waits in the outbox for the relay", exc, message_id)
        return False
    return True


def deliver(message_id: uuid.UUID | str) -> int:
    """Send the notice of one row unless it was sent already; returns the number of emails sent."""
    from tasks.mail import send_envelope_notice

    with transaction.atomic():
        message = OutboxMessage.objects.select_for_update().filter(pk=message_id, delivered_at__isnull=True).first()
        if message is None:
            return 0  # delivered by an earlier copy of this message (or never existed)
        sent = send_envelope_notice(kind=message.kind, envelope_id=str(message.envelope_id))
        # An exception above rolls this back: the row stays undelivered and is handed over again.
        OutboxMessage.objects.filter(pk=message.pk).update(delivered_at=timezone.now(), attempts=message.attempts + 1)
    return sent


def relay_outbox(*, now: datetime | None = None) -> int:
    """Hand every row still undelivered to the broker again; returns how many were handed over."""
    now = now or timezone.now()
    due = list(
        OutboxMessage.objects.filter(delivered_at__isnull=True, created_at__lte=now - RELAY_GRACE)
        .filter(Q(published_at__isnull=True) | Q(published_at__lte=now - REPUBLISH_AFTER))
        .order_by("created_at")
        .values_list("id", flat=True)[:RELAY_BATCH]
    )
    handed = 0
    for message_id in due:
        if not publish(message_id):
            break  # the broker is still down: the next run tries again
        OutboxMessage.objects.filter(pk=message_id).update(published_at=now)
        handed += 1
    return handed
