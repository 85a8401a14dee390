"""Celery tasks: thin, take ids, call one service."""

from __future__ import annotations

from smtplib import SMTPException

from celery import shared_task


@shared_task(ignore_result=True, autoretry_for=(SMTPException, ConnectionError, TimeoutError), max_retries=3,
             retry_backoff=30, retry_jitter=True)
def notify_envelope(kind: str, envelope_id: str) -> None:
    from tasks.mail import send_envelope_notice

    send_envelope_notice(kind=kind, envelope_id=envelope_id)
