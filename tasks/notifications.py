"""Tell approvers about waiting work and requesters about decisions. Runs after commit."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def envelope_event(kind: str, envelope_id) -> None:
    """Hand the notice to the worker; never block or fail the request that caused it."""
    try:
        from tasks.jobs import notify_envelope

        # No publish retries: with the broker down this fails at once (and is logged) instead of
        # holding the approver's request while kombu retries.
        notify_envelope.apply_async(args=(kind, str(envelope_id)), retry=False)
    except Exception:  # the broker being down must not fail an approval
        logger.warning("could not enqueue %s notice for envelope %s", kind, envelope_id, exc_info=True)
