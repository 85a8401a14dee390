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
