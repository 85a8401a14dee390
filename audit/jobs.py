"""Celery tasks of the audit trail (beat entry in settings.CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="audit.jobs.write_audit_checkpoint", ignore_result=True)
def write_audit_checkpoint() -> int | None:
    """Sign where the chains stand and append it to the sink; a run when nothing moved only retries
    the delivery of undelivered checkpoints (idempotent)."""
    from audit.checkpoints import Reason, write_checkpoint

    checkpoint = write_checkpoint(reason=Reason.SCHEDULED)
    return checkpoint.seq if checkpoint else None
