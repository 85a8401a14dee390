"""Posture analytics: excessive privilege, standing access, stale and orphaned identities.

Every selector takes the caller and scopes to what they may read (owners: their agents only), works
over a time window, and answers with a fixed number of aggregate queries however many agents exist.
The one write here, ``flag_orphaned_agents``, sits beside the selector it shares with the page, so
the sweep and the page can never disagree on what "orphaned" means.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import (
    Count,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
)
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts.roles import AGENT_OWNER
from audit import services as audit
from audit.services import ActorLike, RequestLike
from core.errors import ValidationFailed
from identities.models import Agent, Credential, Instance
from posture.models import StandingException
from tasks.lifecycle import pause_agent
from tasks.models import ActivityEvent, TaskEnvelope
from tasks.resources import pattern_matches
from tasks.services import request_envelope

# Thresholds. Named so the page can say what it flags and a test can pin each one.
RENEWAL_GAP = timedelta(minutes=15)  # a new envelope this soon after the last one ended is a renewal
RENEWAL_CHAIN_MIN = 3  # back-to-back envelopes for one intent before we call it standing access
MAX_DURATION_MIN_ENVELOPES = 3  # an agent needs this many envelopes before "always max" means anything
MINT_RATIO = 3  # credentials per action beyond which minting is "far more than needed"
MINT_MIN_CREDENTIALS = 10  # …and at least this many, so one retry storm of two does not count
NEVER_SEEN_GRACE = timedelta(days=1)  # an instance registered this long ago and never seen is flagged
SHORT_LIVED = timedelta(minutes=15)

LIFETIME_BUCKETS = (  # (label, upper bound) for the credential lifetime histogram
    ("≤ 1 min", timedelta(minutes=1)),
    ("≤ 5 min", timedelta(minutes=5)),
    ("≤ 15 min", timedelta(minutes=15)),
    ("≤ 1 h", timedelta(hours=1)),
    ("> 1 h", None),
)
WAIT_BUCKETS = (  # approval waiting time histogram
    ("< 5 min", timedelta(minutes=5)),
    ("< 1 h", timedelta(hours=1)),
    ("< 4 h", timedelta(hours=4)),
    ("< 24 h", timedelta(hours=24)),
    ("≥ 24 h", None),
)
USED_KINDS = (ActivityEvent.Kind.DECISION, ActivityEvent.Kind.TOOL_CALL, ActivityEvent.Kind.SECRET_ACCESS)

if TYPE_CHECKING:
    from django.contrib.auth.models import User


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime

    @classmethod
    def last(cls, days: int, now: datetime | None = None) -> Window:
        now = now or timezone.now()
        return cls(now - timedelta(days=days), now)

    @property
    def days(self) -> int:
        return max(round((self.until - self.since).total_seconds() / 86400), 1)


# --- scoping -------------------------------------------------------------------------------------


def agents_in_scope(user: User) -> QuerySet[Agent]:
    return Agent.objects.visible_to(user)


def envelopes_in_window(user, window: Window) -> QuerySet[TaskEnvelope]:
    """Envelopes that held authority at some point in the window (approved, not ended before it)."""
    qs = TaskEnvelope.objects.filter(approved_at__isnull=False, approved_at__lt=window.until).filter(
        Q(ended_at__isnull=True) | Q(ended_at__gte=window.since)
    )
    return qs.visible_to(user)


# --- granted vs used -----------------------------------------------------------------------------


@dataclass
class Usage:
    """Granted against used for one envelope or one agent."""

    granted_scopes: list[str]
    used_scopes: list[str]
    granted_resources: list[str]
    used_resources: list[str]  # the granted patterns that matched at least one used resource
    calls: int = 0

    @property
    def unused_scopes(self) -> list[str]:
        return sorted(set(self.granted_scopes) - set(self.used_scopes))

    @property
    def unused_resources(self) -> list[str]:
        return [r for r in self.granted_resources if r not in self.used_resources]

    @property
    def used_share(self) -> float | None:
        return len(self.used_scopes) / len(self.granted_scopes) if self.granted_scopes else None


@dataclass
class EnvelopeUsage(Usage):
    envelope_id: object = None
    agent_id: object = None
    agent_slug: str = ""
    instance_id: object = None
    intent: str = ""
    state: str = ""
    duration_seconds: int = 0
    max_actions: int = 0
    approved_at: datetime | None = None

    @property
    def suggestion(self) -> dict | None:
        """The used subset, as the fields of a narrower next request; None when nothing to narrow."""
        if not self.used_scopes or (not self.unused_scopes and not self.unused_resources):
            return None
        return {"scopes": sorted(self.used_scopes), "resources": list(self.used_resources)}


@dataclass
class AgentUsage(Usage):
    agent_id: object = None
    agent_slug: str = ""
    envelopes: int = 0


@dataclass
class GrantedVsUsed:
    envelopes: list[EnvelopeUsage] = field(default_factory=list)
    agents: list[AgentUsage] = field(default_factory=list)
    granted_pairs: int = 0  # (envelope, scope) grants in the window
    unused_pairs: int = 0

    @property
    def unused_share(self) -> float | None:
        """Organisation-wide (within the caller's scope): share of granted scopes never used."""
        return self.unused_pairs / self.granted_pairs if self.granted_pairs else None


def granted_vs_used(user, window: Window, *, agent: Agent | None = None, resource_sample: int = 200) -> GrantedVsUsed:
    """Three queries: the envelopes, the (envelope, scope) uses, the (envelope, resource) uses.

    A use is an activity event under the envelope inside the window that was not refused: an allowed
    decision, or a reported tool call or secret access. Denied calls do not count as use.
    """
    envs = envelopes_in_window(user, window)
    if agent is not None:
        envs = envs.filter(agent=agent)
    rows = list(
        envs.order_by("agent__slug", "approved_at").values(
            "id",
            "agent_id",
            "agent__slug",
            "instance_id",
            "intent",
            "state",
            "scopes",
            "resources",
            "duration_seconds",
            "max_actions",
            "approved_at",
        )
    )
    result = GrantedVsUsed()
    if not rows:
        return result
    uses = ActivityEvent.objects.filter(
        envelope_id__in=envs.values("id"),
        kind__in=USED_KINDS,
        occurred_at__gte=window.since,
        occurred_at__lt=window.until,
    ).exclude(allow=False)
    scope_uses: dict = defaultdict(dict)
    for row in uses.values("envelope_id", "scope").annotate(n=Count("id")).order_by():
        scope_uses[row["envelope_id"]][row["scope"]] = row["n"]
    resource_uses: dict = defaultdict(set)
    # Distinct resources per envelope; bounded so a crawler touching a million paths stays cheap.
    for row in (
        uses.exclude(resource="").values("envelope_id", "resource").distinct().order_by()[: resource_sample * len(rows)]
    ):
        resource_uses[row["envelope_id"]].add(row["resource"])

    per_agent: dict = {}
    for row in rows:
        used = scope_uses.get(row["id"], {})
        granted = sorted(set(row["scopes"]))
        used_scopes = sorted(s for s in used if s in granted)
        seen = resource_uses.get(row["id"], set())
        used_resources = [p for p in row["resources"] if any(pattern_matches(p, r) for r in seen)]
        usage = EnvelopeUsage(
            granted_scopes=granted,
            used_scopes=used_scopes,
            granted_resources=list(row["resources"]),
            used_resources=used_resources,
            calls=sum(used.values()),
            envelope_id=row["id"],
            agent_id=row["agent_id"],
            agent_slug=row["agent__slug"],
            instance_id=row["instance_id"],
            intent=row["intent"],
            state=row["state"],
            duration_seconds=row["duration_seconds"],
            max_actions=row["max_actions"],
            approved_at=row["approved_at"],
        )
        result.envelopes.append(usage)
        result.granted_pairs += len(granted)
        result.unused_pairs += len(granted) - len(used_scopes)
        agg = per_agent.setdefault(
            row["agent_id"],
            AgentUsage(
                granted_scopes=[],
                used_scopes=[],
                granted_resources=[],
                used_resources=[],
                agent_id=row["agent_id"],
                agent_slug=row["agent__slug"],
            ),
        )
        agg.envelopes += 1
        agg.calls += usage.calls
        agg.granted_scopes = sorted(set(agg.granted_scopes) | set(granted))
        agg.used_scopes = sorted(set(agg.used_scopes) | set(used_scopes))
        agg.granted_resources = list(dict.fromkeys([*agg.granted_resources, *row["resources"]]))
        agg.used_resources = list(dict.fromkeys([*agg.used_resources, *used_resources]))
    result.agents = sorted(per_agent.values(), key=lambda a: (-len(a.unused_scopes), a.agent_slug))
    return result


# --- standing access -----------------------------------------------------------------------------


@dataclass
class RenewalChain:
    agent_slug: str
    instance_id: object
    intent: str
    envelope_ids: list
    first_approved_at: datetime
    last_ended_at: datetime | None

    @property
    def length(self) -> int:
        return len(self.envelope_ids)

    @property
    def span(self) -> timedelta:
        end = self.last_ended_at or timezone.now()
        return end - self.first_approved_at


def back_to_back_renewals(user, window: Window) -> list[RenewalChain]:
    """Envelopes for the same instance and intent, each approved within ``RENEWAL_GAP`` of the previous
    one ending (or while it was still live), ``RENEWAL_CHAIN_MIN`` or more in a row: standing access
    dressed up as just-in-time. One query; the chaining is done in Python over the window's rows."""
    rows = (
        envelopes_in_window(user, window)
        .order_by("instance_id", "intent", "approved_at")
        .values("id", "agent__slug", "instance_id", "intent", "approved_at", "ended_at", "expires_at")
    )
    chains: list[RenewalChain] = []
    current: RenewalChain | None = None
    prev_end = None
    for row in rows.iterator(chunk_size=2000):
        key = (row["instance_id"], row["intent"].strip().lower())
        same = current is not None and (current.instance_id, current.intent.strip().lower()) == key
        if same and prev_end is not None and row["approved_at"] <= prev_end + RENEWAL_GAP:
            current.envelope_ids.append(row["id"])
            current.last_ended_at = row["ended_at"]
        else:
            if current is not None and current.length >= RENEWAL_CHAIN_MIN:
                chains.append(current)
            current = RenewalChain(
                row["agent__slug"], row["instance_id"], row["intent"], [row["id"]], row["approved_at"], row["ended_at"]
            )
        prev_end = row["ended_at"] or row["expires_at"] or timezone.now()
    if current is not None and current.length >= RENEWAL_CHAIN_MIN:
        chains.append(current)
    return sorted(chains, key=lambda c: -c.length)


def always_max_duration(user, window: Window) -> list[dict]:
    """Agents with enough envelopes in the window, every one of them at the agent's longest duration."""
    return list(
        agents_in_scope(user)
        .annotate(
            envelope_count=Count("envelopes", filter=Q(envelopes__in=envelopes_in_window(user, window))),
            at_max=Count(
                "envelopes",
                filter=Q(
                    envelopes__in=envelopes_in_window(user, window),
                    envelopes__duration_seconds__gte=F("max_envelope_seconds"),
                ),
            ),
        )
        .filter(envelope_count__gte=MAX_DURATION_MIN_ENVELOPES, at_max=F("envelope_count"))
        .order_by("slug")
        .values("id", "slug", "max_envelope_seconds", "envelope_count")
    )


def over_minted(user, window: Window) -> list[dict]:
    """Envelopes whose credentials were minted far more often than their actions needed: at least
    ``MINT_MIN_CREDENTIALS`` and more than ``MINT_RATIO`` per action used."""
    counts = (
        Credential.objects.filter(
            envelope__in=envelopes_in_window(user, window), issued_at__gte=window.since, issued_at__lt=window.until
        )
        .values("envelope_id", "envelope__agent__slug", "envelope__intent", "envelope__actions_used")
        .annotate(credentials=Count("jti"))
        .filter(credentials__gte=MINT_MIN_CREDENTIALS)
        .order_by()
    )
    found = []
    for row in counts:
        needed = max(row["envelope__actions_used"], 1)
        if row["credentials"] > MINT_RATIO * needed:
            found.append(
                {
                    "envelope_id": row["envelope_id"],
                    "agent_slug": row["envelope__agent__slug"],
                    "intent": row["envelope__intent"],
                    "credentials": row["credentials"],
                    "actions": row["envelope__actions_used"],
                    "ratio": round(row["credentials"] / needed, 1),
                }
            )
    return sorted(found, key=lambda r: -r["ratio"])


# --- stale and orphaned --------------------------------------------------------------------------


def orphaned_agents_query() -> QuerySet[Agent]:
    """Live agents whose owner is deactivated or no longer in the agent-owner group (superusers hold
    every role, so they never orphan an agent)."""
    user_model = get_user_model()
    in_owner_group = user_model.groups.through.objects.filter(user_id=OuterRef("owner_id"), group__name=AGENT_OWNER)
    return (
        Agent.objects.exclude(status=Agent.Status.RETIRED)
        .annotate(owner_in_group=Exists(in_owner_group))
        .filter(Q(owner__is_active=False) | Q(owner__is_superuser=False, owner_in_group=False))
    )


def flag_orphaned_agents(*, pause: bool = True, now: datetime | None = None) -> dict:
    """Flag agents that lost their owner, and by policy pause them (their credentials die with it);
    clear the flag on agents whose owner is back. Idempotent: claims each row with a conditional
    update and audits only the rows it changed."""
    actor = audit.Actor.of_policy("orphaned-owner")
    flagged = paused = cleared = 0
    for agent in orphaned_agents_query().select_related("owner").order_by("id").iterator(chunk_size=200):
        with transaction.atomic():
            if Agent.objects.filter(pk=agent.pk, orphaned=False).update(orphaned=True):
                flagged += 1
                reason = (
                    f"owner {agent.owner.get_username()} is "
                    f"{'deactivated' if not agent.owner.is_active else 'no longer an agent owner'}"
                )
                audit.record(
                    "agent.orphaned",
                    actor=actor,
                    target=agent,
                    before={"orphaned": False},
                    after={"orphaned": True},
                    reason=reason,
                )
        if pause and agent.status == Agent.Status.ACTIVE:
            pause_agent(agent=agent, actor=actor, reason="owner gone: paused by the orphaned-owner policy")
            paused += 1
    back = Agent.objects.filter(orphaned=True).exclude(pk__in=orphaned_agents_query().values("pk"))
    for agent in back.order_by("id").iterator(chunk_size=200):
        with transaction.atomic():
            if Agent.objects.filter(pk=agent.pk, orphaned=True).update(orphaned=False):
                cleared += 1
                audit.record(
                    "agent.orphan_cleared",
                    actor=actor,
                    target=agent,
                    before={"orphaned": True},
                    after={"orphaned": False},
                    reason="owner is an active agent owner again",
                )
    return {"flagged": flagged, "paused": paused, "cleared": cleared}


def stale_and_orphaned(user, *, now: datetime | None = None) -> dict[str, QuerySet]:
    """The querysets behind each stale/orphaned count; the page counts them, the rows view lists them."""
    now = now or timezone.now()
    live = Instance.LIVE_STATES
    instances = Instance.objects.select_related("agent", "parent").visible_to(user)
    agents = agents_in_scope(user).select_related("owner")
    return {
        "stale_instances": instances.filter(stale=True, status__in=live),
        "stale_envelopes": TaskEnvelope.objects.select_related("agent", "instance")
        .visible_to(user)
        .filter(stale=True, state__in=TaskEnvelope.LIVE_STATES),
        "orphaned_agents": agents.filter(Q(orphaned=True) | Q(pk__in=orphaned_agents_query().values("pk"))).exclude(
            status=Agent.Status.RETIRED
        ),
        "never_seen": instances.filter(
            status__in=live, last_seen_at__isnull=True, created_at__lt=now - NEVER_SEEN_GRACE
        ),
        "outlived_parent": instances.filter(
            status__in=live,
            origin__in=(Instance.Origin.CLONE, Instance.Origin.SUBAGENT),
            parent__status=Instance.Status.RETIRED,
        ),
        "open_exceptions": StandingException.objects.select_related("owner", "agent")
        .visible_to(user)
        .filter(status__in=StandingException.OPEN_STATES),
    }


STALE_LABELS = {
    "stale_instances": "Stale instances",
    "stale_envelopes": "Stale envelopes",
    "orphaned_agents": "Orphaned agents",
    "never_seen": "Instances never seen",
    "outlived_parent": "Clones outliving parent",
    "open_exceptions": "Standing exceptions",
}


def stale_counts(user, *, now: datetime | None = None) -> dict[str, int]:
    """One COUNT per category: six queries whatever the number of agents."""
    return {key: qs.order_by().count() for key, qs in stale_and_orphaned(user, now=now).items()}


# --- charts' numbers -----------------------------------------------------------------------------


def _lifetime_expression():
    return ExpressionWrapper(F("expires_at") - F("issued_at"), output_field=DurationField())


def credential_lifetimes(user, window: Window) -> list[tuple[str, int]]:
    """How long credentials issued in the window were valid for, bucketed; one query."""
    qs = (
        Credential.objects.filter(issued_at__gte=window.since, issued_at__lt=window.until)
        .visible_to(user)
        .annotate(life=_lifetime_expression())
    )
    aggs, lower = {}, None
    for i, (_label, upper) in enumerate(LIFETIME_BUCKETS):
        cond = Q()
        if lower is not None:
            cond &= Q(life__gt=lower)
        if upper is not None:
            cond &= Q(life__lte=upper)
        aggs[f"b{i}"] = Count("jti", filter=cond)
        lower = upper
    counts = qs.aggregate(**aggs)
    return [(label, counts[f"b{i}"] or 0) for i, (label, _u) in enumerate(LIFETIME_BUCKETS)]


def credentials_in_bucket(user, window: Window, index: int) -> QuerySet[Credential]:
    lower = LIFETIME_BUCKETS[index - 1][1] if index > 0 else None
    upper = LIFETIME_BUCKETS[index][1]
    qs = (
        Credential.objects.select_related("instance__agent")
        .filter(issued_at__gte=window.since, issued_at__lt=window.until)
        .visible_to(user)
        .annotate(life=_lifetime_expression())
    )
    if lower is not None:
        qs = qs.filter(life__gt=lower)
    if upper is not None:
        qs = qs.filter(life__lte=upper)
    return qs


def _wait_expression():
    return ExpressionWrapper(F("approved_at") - F("created_at"), output_field=DurationField())


def decided_by_people(user, window: Window) -> QuerySet[TaskEnvelope]:
    qs = TaskEnvelope.objects.filter(approved_at__gte=window.since, approved_at__lt=window.until, auto_approved_by="")
    return qs.visible_to(user).annotate(wait=_wait_expression())


def approval_waits(user, window: Window) -> dict:
    """Waiting time from request to approval for envelopes approved in the window (people's decisions
    bucketed; approvals by a named policy rule counted apart); one query."""
    aggs, lower = {}, None
    for i, (_label, upper) in enumerate(WAIT_BUCKETS):
        cond = Q(auto_approved_by="")
        if lower is not None:
            cond &= Q(wait__gte=lower)
        if upper is not None:
            cond &= Q(wait__lt=upper)
        aggs[f"b{i}"] = Count("id", filter=cond)
        lower = upper
    aggs["auto"] = Count("id", filter=~Q(auto_approved_by=""))
    counts = (
        TaskEnvelope.objects.filter(approved_at__gte=window.since, approved_at__lt=window.until)
        .visible_to(user)
        .annotate(wait=_wait_expression())
        .aggregate(**aggs)
    )
    return {
        "buckets": [(label, counts[f"b{i}"] or 0) for i, (label, _u) in enumerate(WAIT_BUCKETS)],
        "auto": counts["auto"] or 0,
    }


def envelopes_in_wait_bucket(user, window: Window, index: int) -> QuerySet[TaskEnvelope]:
    lower = WAIT_BUCKETS[index - 1][1] if index > 0 else None
    upper = WAIT_BUCKETS[index][1]
    qs = decided_by_people(user, window).select_related("agent", "requested_by")
    if lower is not None:
        qs = qs.filter(wait__gte=lower)
    if upper is not None:
        qs = qs.filter(wait__lt=upper)
    return qs


def activity_in_scope(user: User) -> QuerySet[ActivityEvent]:
    return ActivityEvent.objects.all().visible_to(user)


def denials_and_drift(user, window: Window) -> list[dict]:
    """Per day in the window: denied decisions and drift events; one grouped query, days without
    events filled with zeros so the time axis is honest."""
    rows = (
        activity_in_scope(user)
        .filter(occurred_at__gte=window.since, occurred_at__lt=window.until)
        .filter(Q(allow=False) | Q(drift=True))
        .annotate(day=TruncDate("occurred_at"))
        .values("day")
        .annotate(denied=Count("id", filter=Q(allow=False)), drift=Count("id", filter=Q(drift=True)))
        .order_by("day")
    )
    by_day = {row["day"]: row for row in rows}
    days = []
    day = window.since.date()
    while day <= window.until.date():
        row = by_day.get(day, {})
        days.append({"day": day, "denied": row.get("denied", 0), "drift": row.get("drift", 0)})
        day += timedelta(days=1)
    return days


def short_lived_share(user, window: Window) -> tuple[int, int]:
    """(credentials valid for at most 15 minutes, all credentials) issued in the window."""
    qs = (
        Credential.objects.filter(issued_at__gte=window.since, issued_at__lt=window.until)
        .visible_to(user)
        .annotate(life=_lifetime_expression())
    )
    counts = qs.aggregate(total=Count("jti"), short=Count("jti", filter=Q(life__lte=SHORT_LIVED)))
    return counts["short"] or 0, counts["total"] or 0


# --- one click: the used subset as the next request ------------------------------------------------


def request_narrower_envelope(
    *, envelope: TaskEnvelope, actor: ActorLike, window: Window, request: RequestLike | None = None
) -> TaskEnvelope:
    """Ask for the same task again with only what was used: the used scopes and the granted resource
    patterns that matched a used resource (all of them when no resource was reported). The request
    goes through ``request_envelope`` like any other, so ceiling, policy and approval all apply."""
    usage = next(
        (u for u in granted_vs_used(actor, window, agent=envelope.agent).envelopes if u.envelope_id == envelope.id),
        None,
    )
    suggestion = usage.suggestion if usage is not None else None
    if suggestion is None:
        raise ValidationFailed("nothing to narrow: every granted scope was used, or none was", field="scopes")
    resources = suggestion["resources"] or list(envelope.resources)
    with transaction.atomic():
        new = request_envelope(
            actor=actor,
            instance=envelope.instance,
            intent=envelope.intent,
            scopes=suggestion["scopes"],
            resources=resources,
            duration_seconds=envelope.duration_seconds,
            max_actions=envelope.max_actions,
            may_delegate=envelope.may_delegate,
            delegation_depth=envelope.delegation_depth,
            audiences=list(envelope.audiences),
            request=request,
        )
        audit.record(
            "envelope.narrowed",
            actor=actor,
            target=new,
            before={"from": str(envelope.id), "scopes": sorted(envelope.scopes), "resources": list(envelope.resources)},
            after={"scopes": new.scopes, "resources": new.resources},
            reason=f"used subset over the last {window.days} days",
            request=request,
        )
    return new
