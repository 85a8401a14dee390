"""Known activity for posture tests: envelopes approved in the past, with events and credentials."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.utils import timezone

from identities.models import Credential
from tasks import services as task_services
from tasks.models import ActivityEvent, TaskEnvelope
from tests.helpers.factories import make_envelope


def approved_envelope(
    instance,
    admin,
    *,
    scopes=("github:read", "github:write", "jira:read"),
    resources=("repo:acme/*", "project:OPS"),
    intent="triage this week's invoices",
    duration_seconds=1800,
    approved_at=None,
    ended_at=None,
    state=None,
    max_actions=50,
):
    envelope = make_envelope(
        instance,
        scopes=scopes,
        resources=resources,
        intent=intent,
        duration_seconds=duration_seconds,
        max_actions=max_actions,
    )
    if envelope.state == TaskEnvelope.State.PENDING:
        task_services.approve_envelope(envelope=envelope, actor=admin)
    approved_at = approved_at or timezone.now() - timedelta(hours=2)
    fields = {
        "approved_at": approved_at,
        "created_at": approved_at - timedelta(minutes=10),
        "expires_at": approved_at + timedelta(seconds=duration_seconds),
    }
    if ended_at is not None:
        fields.update(ended_at=ended_at, state=state or TaskEnvelope.State.COMPLETED)
    TaskEnvelope.objects.filter(pk=envelope.pk).update(**fields)
    envelope.refresh_from_db()
    return envelope


def event(envelope, *, scope, resource="", allow=True, kind=ActivityEvent.Kind.DECISION, drift=False, at=None):
    return ActivityEvent.objects.create(
        kind=kind,
        agent_id=envelope.agent_id,
        instance_id=envelope.instance_id,
        envelope=envelope,
        scope=scope,
        resource=resource,
        allow=allow,
        drift=drift,
        reason="ok" if allow else "scope_not_granted",
        occurred_at=at or timezone.now() - timedelta(hours=1),
    )


def credentials(envelope, n, *, ttl=timedelta(minutes=5), at=None):
    at = at or timezone.now() - timedelta(hours=1)
    Credential.objects.bulk_create(
        [
            Credential(
                jti=uuid.uuid4().hex,
                instance_id=envelope.instance_id,
                envelope=envelope,
                scopes=list(envelope.scopes),
                audience="mandate",
                issued_at=at,
                expires_at=at + ttl,
                status=Credential.Status.EXPIRED,
                kid="k1",
            )
            for _ in range(n)
        ]
    )
