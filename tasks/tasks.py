"""Celery tasks: thin, take ids, call one service."""

from __future__ import annotations

from smtplib import SMTPException

from celery import shared_task


@shared_task(
    ignore_result=True,
    autoretry_for=(SMTPException, ConnectionError, TimeoutError),
    max_retries=3,
    retry_backoff=30,
    retry_jitter=True,
)
def notify_envelope(kind: str, envelope_id: str) -> None:
    from tasks.mail import send_envelope_notice

    send_envelope_notice(kind=kind, envelope_id=envelope_id)


# --- posture: standing exceptions, orphaned agents, evidence exports -----------------------------


@shared_task(ignore_result=True)
def expire_due_exceptions() -> int:
    from tasks.exceptions import expire_due_exceptions as sweep

    return sweep()


@shared_task(ignore_result=True)
def remind_recertifications() -> int:
    from tasks.exceptions import remind_recertifications as sweep

    return sweep()


@shared_task(ignore_result=True)
def flag_orphaned_agents() -> dict:
    from tasks.posture import flag_orphaned_agents as sweep

    return sweep()


@shared_task(ignore_result=True)
def run_evidence_export(job_id: str) -> None:
    from tasks.export import run_export

    run_export(job_id)


# --- scheduled sweeps (routed to the `scheduled` queue; beat entries in settings.CELERY_BEAT_SCHEDULE) ---


@shared_task(ignore_result=True)
def expire_overdue_credentials() -> int:
    from tasks import sweeps

    return sweeps.expire_overdue_credentials()


@shared_task(ignore_result=True)
def expire_overdue_envelopes() -> int:
    from tasks import sweeps

    return sweeps.expire_overdue_envelopes()


@shared_task(ignore_result=True)
def expire_pending_requests() -> int:
    from tasks import sweeps

    return sweeps.expire_pending_requests()


@shared_task(ignore_result=True)
def flag_stale_sessions() -> int:
    from tasks import sweeps

    return sweeps.flag_stale_sessions()


@shared_task(ignore_result=True)
def rotate_signing_keys() -> int:
    from tasks import sweeps

    return sweeps.rotate_signing_keys()


@shared_task(ignore_result=True)
def activate_published_keys() -> int:
    from tasks import sweeps

    return sweeps.activate_published_keys()


@shared_task(ignore_result=True)
def retire_drained_keys() -> int:
    from tasks import sweeps

    return sweeps.retire_drained_keys()
