"""Emails about envelopes: approvers hear of pending work, requesters of the decision."""

from __future__ import annotations

import os

from django.conf import settings
from django.core.mail import send_mail

from tasks.models import TaskEnvelope
from tasks.selectors import approvers_of

_OUTCOME = {
    TaskEnvelope.State.APPROVED: "was approved",
    TaskEnvelope.State.DENIED: "was denied",
    TaskEnvelope.State.EXPIRED: "expired: nobody decided in time",
}


def _link(envelope: TaskEnvelope) -> str:
    base = settings.MANDATE_PUBLIC_URL
    if not base and settings.DEBUG:  # make run: the address it serves on
        base = f"http://127.0.0.1:{os.environ.get('PORT') or 8000}"
    return f"{base}/envelopes/{envelope.id}/" if base else str(envelope.id)


def send_envelope_notice(*, kind: str, envelope_id: str) -> int:
    """Send the notice for ``kind`` ("pending" or "decided"); returns the number of emails sent.
    Reads the envelope afresh, so a notice that arrives late says what is true now."""
    envelope = TaskEnvelope.objects.select_related("agent", "requested_by").filter(pk=envelope_id).first()
    if envelope is None:
        return 0
    if kind == "pending":
        if envelope.state != TaskEnvelope.State.PENDING:
            return 0  # decided before the worker got to it: nothing is waiting any more
        recipients = sorted({u.email for u in approvers_of(envelope).exclude(email="")})
        subject = f"[Mandate] {envelope.risk}-risk envelope for {envelope.agent.slug} awaits approval"
        intro = (
            f"{envelope.requested_by.get_username()} asks for a {envelope.risk}-risk envelope "
            f"({envelope.required_approvals} approval(s) needed)."
        )
    elif kind == "decided":
        recipients = [envelope.requested_by.email] if envelope.requested_by.email else []
        outcome = _OUTCOME.get(envelope.state, f"is {envelope.state}")
        subject = f"[Mandate] your envelope for {envelope.agent.slug} {outcome}"
        intro = f"Your envelope request {outcome}."
        if envelope.state == TaskEnvelope.State.DENIED and envelope.end_reason:
            intro += f"\nReason: {envelope.end_reason}"
    else:
        return 0
    if not recipients:
        return 0
    body = (
        f"{intro}\n\nAgent: {envelope.agent.slug}\nIntent: {envelope.intent}\nScopes: {' '.join(envelope.scopes)}\n"
        f"Resources: {' '.join(envelope.resources) or '-'}\nDuration: {envelope.duration_seconds} s\n"
        f"Risk: {envelope.risk}\nState: {envelope.state}\nPolicy version: {envelope.policy_version}\n"
        f"Envelope: {_link(envelope)}\n"
    )
    return send_mail(subject, body, None, recipients)
