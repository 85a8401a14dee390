"""Reads, already scoped to the caller: owners see only their own agents; admins and auditors all."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Count, Prefetch, Q, QuerySet

from accounts.roles import AGENT_OWNER, can_read_all, has_role
from audit.models import AuditEvent
from identities.models import Agent, AgentChange, Credential, Instance

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def agents_for(user: User) -> QuerySet[Agent]:
    pending = AgentChange.objects.filter(state=AgentChange.State.PENDING).select_related("requested_by")
    return (
        Agent.objects.visible_to(user)
        .select_related("owner")
        .annotate(instance_count=Count("instances", filter=~Q(instances__status=Instance.Status.RETIRED)))
        .prefetch_related(Prefetch("changes", queryset=pending, to_attr="pending_changes"))
    )


def pending_agent_changes_for(user: User) -> QuerySet[AgentChange]:
    """Pending changes of ceiling, oldest first: the approval queue's section."""
    return (
        AgentChange.objects.visible_to(user)
        .filter(state=AgentChange.State.PENDING)
        .select_related("agent__owner", "requested_by")
        .order_by("requested_at", "id")
    )


def instances_for(user: User) -> QuerySet[Instance]:
    return Instance.objects.visible_to(user).select_related("agent")


def credentials_for(user: User) -> QuerySet[Credential]:
    return Credential.objects.visible_to(user).select_related("instance__agent")


def audit_events_for(user: User) -> QuerySet[AuditEvent]:
    """Admins and auditors read the whole trail; an agent owner reads the events of their own agents."""
    if can_read_all(user):
        return AuditEvent.objects.all()
    if has_role(user, AGENT_OWNER):
        return AuditEvent.objects.filter(agent_id__in=Agent.objects.visible_to(user).values("id"))
    return AuditEvent.objects.none()
