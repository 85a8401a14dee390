"""Reads of console records, scoped to the caller."""

from __future__ import annotations

from django.db.models import QuerySet

from console.models import ApiToken, AuditEvent
from console.roles import AGENT_OWNER, can_read_all, has_role


def audit_events_for(user) -> QuerySet[AuditEvent]:
    """Admins and auditors read the whole trail; an agent owner reads the events of their own agents."""
    if can_read_all(user):
        return AuditEvent.objects.all()
    if has_role(user, AGENT_OWNER):
        from identities.models import Agent

        return AuditEvent.objects.filter(agent_id__in=Agent.objects.filter(owner=user).values("id"))
    return AuditEvent.objects.none()


def api_tokens_of(user) -> QuerySet[ApiToken]:
    """A person's own API tokens; nobody lists anyone else's."""
    if not getattr(user, "is_authenticated", False):
        return ApiToken.objects.none()
    return ApiToken.objects.filter(user=user)
