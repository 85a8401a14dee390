"""Helpers for the REST tests: role clients and a snapshot of what a refused request must not write."""

from __future__ import annotations

from audit.models import AuditEvent
from identities.models import Agent, Instance
from tasks.models import Approval, TaskEnvelope

ROLES = ("owner", "other_owner", "admin", "auditor", "gateway", "anonymous")


def client_for(role: str, request, api_client):
    """A client acting as the named fixture's user, or with no credentials for ``anonymous``."""
    if role == "anonymous":
        return api_client
    return api_client.as_user(request.getfixturevalue(role))


def written_rows() -> dict[str, int]:
    """Row counts of everything a request could write: a refused request leaves them unchanged."""
    return {
        "agents": Agent.objects.count(),
        "instances": Instance.objects.count(),
        "envelopes": TaskEnvelope.objects.count(),
        "approvals": Approval.objects.count(),
        "audit": AuditEvent.objects.count(),
    }


def state_of(model, pk, field="status"):
    return model.objects.values_list(field, flat=True).get(pk=pk)
