"""Scheduled jobs of the console: thin, idempotent, calling one service each."""

from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(name="console.tasks.revalidate_sso_accounts")
def revalidate_sso_accounts() -> dict[str, int]:
    """Re-check with the OpenID provider everyone signed in through SSO whose window has passed."""
    from django.conf import settings

    if not settings.MANDATE_OIDC_ENABLED:
        return {"checked": 0, "refused": 0, "unavailable": 0}
    from console import sso  # loaded only when single sign-on is on

    outcome = sso.revalidate_due_accounts()
    logger.info("single sign-on re-validation: %s", outcome)
    return outcome


@shared_task(ignore_result=True, name="console.jobs.sweep_rate_counts")
def sweep_rate_counts() -> int:
    """Delete the database's rate-limit counts of windows that have ended (core/ratelimit.py)."""
    from core import ratelimit

    return ratelimit.sweep()
