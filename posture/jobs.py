"""Celery jobs of posture/: thin, take ids, call one service. Registered names stay
``tasks.tasks.<name>`` (beat entries and queued messages carry them).
"""

from __future__ import annotations

from celery import shared_task

from posture import export, selectors, standing_exceptions


@shared_task(ignore_result=True, name="tasks.tasks.expire_due_exceptions")
def expire_due_standing_exceptions() -> int:
    return standing_exceptions.expire_due_standing_exceptions()


@shared_task(ignore_result=True, name="tasks.tasks.remind_recertifications")
def remind_recertifications() -> int:
    return standing_exceptions.remind_recertifications()


@shared_task(ignore_result=True, name="tasks.tasks.flag_orphaned_agents")
def flag_orphaned_agents() -> dict:
    return selectors.flag_orphaned_agents()


@shared_task(ignore_result=True, name="tasks.tasks.run_evidence_export")
def run_evidence_export(job_id: str) -> None:
    export.run_export(job_id)
