"""Celery tasks: thin, take ids, call one service."""

from __future__ import annotations

from celery import shared_task


@shared_task(ignore_result=True)
def notify_envelope(kind: str, envelope_id: str) -> None:
    from tasks.mail import send_envelope_notice

    send_envelope_notice(kind=kind, envelope_id=envelope_id)
