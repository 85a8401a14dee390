"""Reads of envelopes and activity, already scoped to the caller: owners see only their own agents';
admins and auditors all. Lists carry what they render, so their query count is constant whatever
the number of rows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.db.models import Prefetch, Q, QuerySet

from accounts.roles import IDENTITY_ADMIN, is_admin
from tasks.authentication import AgentPrincipal
from tasks.models import ActivityEvent, Approval, TaskEnvelope
from tasks.services import pending_deadline

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def envelopes_for(user: User) -> QuerySet[TaskEnvelope]:
    qs = TaskEnvelope.objects.select_related("agent", "instance", "requested_by", "superseded_by").prefetch_related(
        Prefetch("approvals", queryset=Approval.objects.select_related("by").order_by("at", "id"))
    )
    if isinstance(user, AgentPrincipal):
        # An instance sees only the envelope its credential was minted under, and only its own.
        return qs.filter(pk=user.envelope.pk, instance_id=user.instance.pk)
    return qs.visible_to(user)


def pending_inbox(user: User) -> QuerySet[TaskEnvelope]:
    """Pending envelopes this admin could approve now: not requested by them, not already decided
    by them, not a high-risk envelope for their own agent, and not past the pending limit."""
    if not is_admin(user):
        return TaskEnvelope.objects.none()
    return (
        TaskEnvelope.objects.filter(state=TaskEnvelope.State.PENDING, created_at__gt=pending_deadline())
        .exclude(requested_by=user)
        .exclude(approvals__by=user)
        .exclude(risk=TaskEnvelope.Risk.HIGH, agent__owner=user)
    )


def pending_inbox_count(user: User) -> int:
    """The console's inbox badge: one COUNT query (plus the role lookup, cached per request)."""
    return pending_inbox(user).count()


def approvers_of(envelope: TaskEnvelope) -> QuerySet:
    """Active users who could approve ``envelope``: identity admins and superusers, except its
    requester, those who already decided, and — for high risk — the agent's owner."""
    users = get_user_model().objects.filter(Q(groups__name=IDENTITY_ADMIN) | Q(is_superuser=True), is_active=True)
    users = users.exclude(pk=envelope.requested_by_id).exclude(approvals__envelope=envelope)
    if envelope.risk == TaskEnvelope.Risk.HIGH:
        users = users.exclude(pk=envelope.agent.owner_id)
    return users.distinct()


def activity_for(user: User) -> QuerySet[ActivityEvent]:
    """Activity events, newest first by id; owners see only their own agents' events."""
    # An agent's own credential is authenticated but nobody's owner: it sees none.
    return ActivityEvent.objects.visible_to(user).select_related("agent", "instance__agent")
