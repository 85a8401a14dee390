"""Celery jobs of tasks/: thin, take ids, call one service.

The registered names stay ``tasks.tasks.<name>`` (beat entries and queued messages carry them)
whatever module holds the function.
"""

from __future__ import annotations

from smtplib import SMTPException

from celery import shared_task

from tasks import outbox, sweeps
from tasks.mail import send_envelope_notice


@shared_task(
    ignore_result=True,
    autoretry_for=(SMTPException, ConnectionError, TimeoutError),
    max_retries=3,
    retry_backoff=30,
    retry_jitter=True,
    name="tasks.tasks.notify_envelope",
)
def notify_envelope(kind: str, envelope_id: str) -> None:
    send_envelope_notice(kind=kind, envelope_id=envelope_id)


@shared_task(
    ignore_result=True,
    autoretry_for=(SMTPException, ConnectionError, TimeoutError),
    max_retries=3,
    retry_backoff=30,
    retry_jitter=True,
    name="tasks.tasks.deliver_notice",
)
def deliver_notice(message_id: str) -> int:
    """One outbox row's notice, sent once however many times it was published (tasks/outbox.py)."""
    return outbox.deliver(message_id)


@shared_task(ignore_result=True, name="tasks.tasks.relay_outbox")
def relay_outbox() -> int:
    """Beat job: hand undelivered outbox rows to the broker again (after a broker outage)."""
    return outbox.relay_outbox()


# --- scheduled sweeps (routed to the `scheduled` queue; beat entries in settings.CELERY_BEAT_SCHEDULE) ---


@shared_task(ignore_result=True, name="tasks.tasks.expire_overdue_credentials")
def expire_overdue_credentials() -> int:
    return sweeps.expire_overdue_credentials()


@shared_task(ignore_result=True, name="tasks.tasks.expire_overdue_envelopes")
def expire_overdue_envelopes() -> int:
    return sweeps.expire_overdue_envelopes()


@shared_task(ignore_result=True, name="tasks.tasks.expire_pending_requests")
def expire_pending_requests() -> int:
    return sweeps.expire_pending_requests()


@shared_task(ignore_result=True, name="tasks.tasks.flag_stale_sessions")
def flag_stale_sessions() -> int:
    return sweeps.flag_stale_sessions()


@shared_task(ignore_result=True, name="tasks.tasks.rotate_signing_keys")
def rotate_signing_keys() -> int:
    return sweeps.rotate_signing_keys()


@shared_task(ignore_result=True, name="tasks.tasks.activate_published_keys")
def activate_published_keys() -> int:
    return sweeps.activate_published_keys()


@shared_task(ignore_result=True, name="tasks.tasks.retire_drained_keys")
def retire_drained_keys() -> int:
    return sweeps.retire_drained_keys()
