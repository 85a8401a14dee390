"""Reads of envelopes and activity, already scoped to the caller: owners see only their own agents';
admins and auditors all. Lists carry what they render, so their query count is constant whatever
the number of rows."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.db.models import Case, Count, Exists, F, OuterRef, Prefetch, Q, QuerySet, Value, When, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from accounts.roles import IDENTITY_ADMIN, is_admin
from identities.models import Agent, Credential, Instance
from identities.selectors import agents_for, credentials_for
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


PENDING_REASONS = ("awaiting_you", "requested", "decided", "own_high_risk", "past_limit")


def pending_breakdown(user: User) -> dict[str, int]:
    """Every pending envelope ``user`` can see, counted once under why it is or is not in their inbox
    (the first reason that applies, in the order of ``PENDING_REASONS``' last four); ``awaiting_you``
    is exactly ``pending_inbox_count`` and ``total`` what a "pending" figure counts. One query."""
    reason = Case(
        When(created_at__lte=pending_deadline(), then=Value("past_limit")),
        When(requested_by=user, then=Value("requested")),
        When(risk=TaskEnvelope.Risk.HIGH, agent__owner=user, then=Value("own_high_risk")),
        When(Exists(Approval.objects.filter(envelope=OuterRef("pk"), by=user)), then=Value("decided")),
        default=Value("awaiting_you" if is_admin(user) else "others"),
    )
    rows = (
        TaskEnvelope.objects.visible_to(user)
        .filter(state=TaskEnvelope.State.PENDING)
        .annotate(reason=reason)
        .order_by()
        .values_list("reason")
        .annotate(n=Count("id"))
    )
    counts = dict.fromkeys(PENDING_REASONS, 0) | {"others": 0}
    counts.update(dict(rows))
    counts["total"] = sum(counts.values())
    return counts


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


# --- "My agents": what each of an owner's agents can do right now ---------------------------------


def my_agent_cards(user: User, *, per_agent: int, now: datetime | None = None) -> list[dict]:
    """One card per live agent the user owns: up to ``per_agent`` live and pending envelopes, live
    credentials and the live instances, plus the totals. A fixed number of queries whatever the
    number of agents or rows: the "up to" is picked in the database with window functions."""
    now = now or timezone.now()
    agents = list(agents_for(user).filter(owner=user).exclude(status=Agent.Status.RETIRED).order_by("slug"))
    ids = [a.id for a in agents]
    by_agent = {a.id: {"agent": a, "envelopes": [], "credentials": [], "pending": [], "instances": []} for a in agents}
    _add_open_envelopes(by_agent, user, ids, per_agent)
    _add_open_totals(by_agent, user, ids)
    _add_live_credentials(by_agent, user, ids, per_agent, now)
    _add_live_instances(by_agent, ids)
    return list(by_agent.values())


def _add_open_envelopes(by_agent: dict, user: User, ids: list, per_agent: int) -> None:
    # Pending and live envelopes rank separately, so a queue of requests never hides the live ones.
    waiting = Case(When(state=TaskEnvelope.State.PENDING, then=Value(1)), default=Value(0))
    # The cards show no related rows of an envelope: scoped by the selector, fetched bare.
    open_envelopes = (
        envelopes_for(user)
        .select_related(None)
        .prefetch_related(None)
        .filter(agent_id__in=ids, state__in=TaskEnvelope.OPEN_STATES)
        .annotate(
            rank=Window(
                RowNumber(),
                partition_by=[F("agent_id"), waiting],
                order_by=[F("expires_at").asc(nulls_last=True), F("created_at")],
            )
        )
        .filter(rank__lte=per_agent)
        .order_by("expires_at", "created_at")
    )
    for envelope in open_envelopes:
        key = "pending" if envelope.state == TaskEnvelope.State.PENDING else "envelopes"
        by_agent[envelope.agent_id][key].append(envelope)


def _add_open_totals(by_agent: dict, user: User, ids: list) -> None:
    for agent_id, state, n in (
        envelopes_for(user)
        .prefetch_related(None)
        .filter(agent_id__in=ids, state__in=TaskEnvelope.OPEN_STATES)
        .order_by()
        .values_list("agent_id", "state")
        .annotate(n=Count("id"))
    ):
        key = "pending_total" if state == TaskEnvelope.State.PENDING else "live_total"
        by_agent[agent_id][key] = by_agent[agent_id].get(key, 0) + n


def _add_live_credentials(by_agent: dict, user: User, ids: list, per_agent: int, now: datetime) -> None:
    credentials = (
        credentials_for(user)
        .filter(instance__agent_id__in=ids, status=Credential.Status.ACTIVE, expires_at__gt=now)
        .annotate(rank=Window(RowNumber(), partition_by=[F("instance__agent_id")], order_by=[F("expires_at").asc()]))
        .filter(rank__lte=per_agent)
        .order_by("expires_at")
    )
    for credential in credentials:
        by_agent[credential.instance.agent_id]["credentials"].append(credential)


def _add_live_instances(by_agent: dict, ids: list) -> None:
    for instance in (
        Instance.objects.filter(agent_id__in=ids).exclude(status=Instance.Status.RETIRED).order_by("created_at")
    ):
        instance.agent = by_agent[instance.agent_id]["agent"]
        by_agent[instance.agent_id]["instances"].append(instance)
