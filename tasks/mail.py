"""Emails about envelopes: approvers hear of pending work, requesters of the decision."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.mail import send_mail

from console.roles import IDENTITY_ADMIN
from tasks.models import TaskEnvelope


def send_envelope_notice(*, kind: str, envelope_id: str) -> int:
    envelope = TaskEnvelope.objects.select_related("agent", "requested_by").filter(pk=envelope_id).first()
    if envelope is None:
        return 0
    if kind == "pending":
        users = get_user_model().objects.filter(groups__name=IDENTITY_ADMIN, is_active=True).exclude(email="")
        recipients = sorted({u.email for u in users if u.pk != envelope.requested_by_id})
        subject = f"[Mandate] {envelope.risk}-risk envelope for {envelope.agent.slug} awaits approval"
    else:
        recipients = [envelope.requested_by.email] if envelope.requested_by.email else []
        subject = f"[Mandate] your envelope for {envelope.agent.slug} was {envelope.state}"
    if not recipients:
        return 0
    body = (
        f"Agent: {envelope.agent.slug}\nIntent: {envelope.intent}\nScopes: {' '.join(envelope.scopes)}\n"
        f"Risk: {envelope.risk}\nState: {envelope.state}\nEnvelope: {envelope.id}\n"
    )
    return send_mail(subject, body, None, recipients)
