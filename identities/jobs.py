"""Celery jobs of identities/ (beat entries in settings.CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from celery import shared_task


@shared_task(ignore_result=True, name="identities.jobs.refresh_issuer_keys")
def refresh_issuer_keys() -> int:
    """Refetch the keys of every enabled trusted workload issuer (through core.outbound)."""
    from identities.oidc import refresh_all_issuer_keys

    return refresh_all_issuer_keys()
