"""Reads, already scoped to the caller: owners see only their own agents; admins and auditors all."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Count, Q, QuerySet

from accounts.roles import AGENT_OWNER, can_read_all, has_role
from audit.models import AuditEvent
from identities.models import Agent, Credential, Instance

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def agents_for(user: User) -> QuerySet[Agent]:
    return (
        Agent.objects.visible_to(user)
        .select_related("owner")
        .annotate(instance_count=Count("instances", filter=~Q(instances__status=Instance.Status.RETIRED)))
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
