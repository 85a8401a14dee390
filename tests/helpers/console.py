"""Rows that other parts of Mandate produce (approvals, credentials, activity), made directly for
the console's view tests."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.utils import timezone

from identities.models import Credential
from tasks import services as task_services
from tasks.models import ActivityEvent


def approved(envelope, *admins):
    for admin in admins:
        envelope.refresh_from_db()
        if envelope.state == "pending":
            task_services.approve_envelope(envelope=envelope, actor=admin, comment="ok")
    envelope.refresh_from_db()
    return envelope


def make_credential(envelope, *, instance=None, seconds=300, parent=None, status=Credential.Status.ACTIVE):
    now = timezone.now()
    return Credential.objects.create(
        jti=uuid.uuid4().hex,
        instance=instance or envelope.instance,
        envelope=envelope,
        scopes=list(envelope.scopes),
        audience="mandate",
        issued_at=now,
        expires_at=now + timedelta(seconds=seconds),
        kid="test-key",
        parent=parent,
        status=status,
    )


def make_activity(envelope, n=1, **fields):
    rows = [
        ActivityEvent(
            kind=fields.get("kind", ActivityEvent.Kind.DECISION),
            agent_id=envelope.agent_id,
            instance_id=envelope.instance_id,
            envelope=envelope,
            scope=fields.get("scope", "github:write"),
            resource=fields.get("resource", "repo:acme/app"),
            allow=fields.get("allow", True),
            reason=fields.get("reason", "ok"),
            drift=fields.get("drift", False),
            **({"occurred_at": fields["occurred_at"]} if "occurred_at" in fields else {}),
        )
        for _ in range(n)
    ]
    return ActivityEvent.objects.bulk_create(rows)
