"""Agents: the list, one agent's page with its lifecycle buttons, and an owner's own agents."""

from __future__ import annotations

from collections import Counter, defaultdict

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.roles import AGENT_OWNER, has_role, is_admin
from console.views._common import active_filters, console_view, done, refused, sort_column
from core.errors import DomainError
from identities.models import Agent, Credential, Instance
from identities.permissions import can_manage
from identities.selectors import agents_for, credentials_for, instances_for
from tasks import lifecycle
from tasks.models import ActivityEvent, TaskEnvelope
from tasks.selectors import activity_for, envelopes_for, my_agent_cards

AGENTS_PER_PAGE = 25
# Sortable columns (key → field; the slug, unique, breaks ties so pages never shuffle).
AGENT_SORTS = {"slug": "slug", "status": "status", "owner": "owner__username", "registered": "created_at"}
AGENT_COLUMNS = (
    ("slug", "Agent"),
    ("status", "Status"),
    ("owner", "Owner"),
    ("", "Instances"),
    ("", "Ceiling"),
    ("", "Longest envelope"),
    ("registered", "Registered"),
)
RECENT = 15
PER_AGENT = 5
OPEN_SHOWN = 20


@console_view()
def agent_list(request):
    qs = agents_for(request.user)
    q = request.GET.get("q", "").strip()[:100]
    status = request.GET.get("status", "")
    if q:
        qs = qs.filter(Q(slug__icontains=q) | Q(name__icontains=q))
    if status in Agent.Status.values:
        qs = qs.filter(status=status)
    else:
        status = ""
    sort = request.GET.get("sort", "slug")
    if sort.lstrip("-") not in AGENT_SORTS:
        sort = "slug"
    field = AGENT_SORTS[sort.lstrip("-")]
    order = (f"-{field}", "-slug") if sort.startswith("-") else (field, "slug")
    page = Paginator(qs.order_by(*order), AGENTS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "q": q,
        "status": status,
        "statuses": Agent.Status.choices,
        "sort": sort,
        "columns": [sort_column(sort, key, label) for key, label in AGENT_COLUMNS],
        "active_filters": active_filters(("q", "slug or name contains", q), ("status", "status is", status)),
    }
    template = "console/_agent_rows.html" if request.htmx else "console/agents.html"
    return render(request, template, context)


def lineage(instances: list[Instance]) -> list[tuple[Instance, int]]:
    """Instances in tree order with their depth: clones and sub-agents under their parent."""
    children = defaultdict(list)
    ids = {i.id for i in instances}
    for instance in instances:
        children[instance.parent_id if instance.parent_id in ids else None].append(instance)
    out: list[tuple[Instance, int]] = []

    def walk(parent_id, depth):
        for child in sorted(children.get(parent_id, []), key=lambda i: i.created_at):
            out.append((child, depth))
            walk(child.id, depth + 1)

    walk(None, 0)
    return out


@console_view()
def agent_detail(request, slug):
    user = request.user
    agent = get_object_or_404(agents_for(user), slug=slug)
    now = timezone.now()
    instances = list(instances_for(user).filter(agent=agent).order_by("created_at"))
    for instance in instances:
        instance.agent = agent
    envelopes = envelopes_for(user).filter(agent=agent).prefetch_related(None)  # no approvals shown here
    state_counts = Counter(dict(envelopes.order_by().values_list("state").annotate(n=Count("id"))))
    context = {
        "agent": agent,
        "tree": lineage(instances),
        "state_counts": [(s, label, state_counts.get(s, 0)) for s, label in TaskEnvelope.State.choices],
        "open_envelopes": list(
            envelopes.filter(state__in=TaskEnvelope.OPEN_STATES).order_by("-created_at")[:OPEN_SHOWN]
        ),
        "recent_envelopes": list(
            envelopes.exclude(state__in=TaskEnvelope.OPEN_STATES).order_by("-created_at")[:RECENT]
        ),
        "live_credentials": list(
            credentials_for(user)
            .filter(instance__agent=agent, status=Credential.Status.ACTIVE, expires_at__gt=now)
            .order_by("expires_at")[:OPEN_SHOWN]
        ),
        "activity": list(activity_for(user).filter(agent=agent).order_by("-occurred_at", "-id")[:RECENT]),
        "can_manage": can_manage(user, agent),
        "is_admin": is_admin(user),
        # A locked pause (by an identity admin or a policy rule) is lifted by identity admins only.
        "can_resume": can_manage(user, agent) and (not agent.pause_locked or is_admin(user)),
    }
    return render(request, "console/agent_detail.html", context)


_LIFECYCLE = {
    "pause": lifecycle.pause_agent,
    "resume": lifecycle.resume_agent,
    "retire": lifecycle.retire_agent,
}


@require_POST
@console_view()
def agent_lifecycle(request, slug, verb):
    agent = get_object_or_404(agents_for(request.user), slug=slug)
    back = reverse("agent-page", args=[agent.slug])
    if verb not in _LIFECYCLE:
        raise DjangoPermissionDenied("Unknown action.")
    if not can_manage(request.user, agent):
        raise DjangoPermissionDenied("Only identity admins and the agent's owner may change its lifecycle.")
    if request.POST.get("confirm") != verb:
        return refused(
            request, back, DomainError(f"tick the box to confirm you mean to {verb} {agent.slug}", field="confirm")
        )
    reason = request.POST.get("reason", "").strip()[:500]
    try:
        _LIFECYCLE[verb](agent=agent, actor=request.user, reason=reason, request=request)
    except DomainError as exc:
        return refused(request, back, exc)
    past = {"pause": "paused", "resume": "resumed", "retire": "retired"}[verb]
    return done(request, back, f"{agent.slug} {past}.")


@console_view()
def my_agents(request):
    """An owner's own agents and what each can do right now (admins see their own here too)."""
    user = request.user
    cards = my_agent_cards(user, per_agent=PER_AGENT)
    ids = [card["agent"].id for card in cards]
    decisions = (
        list(
            activity_for(user)
            .filter(agent_id__in=ids, kind=ActivityEvent.Kind.DECISION)
            .order_by("-occurred_at", "-id")[:RECENT]
        )
        if ids
        else []
    )
    context = {
        "cards": cards,
        "decisions": decisions,
        "can_request": has_role(user, AGENT_OWNER) or is_admin(user),
    }
    return render(request, "console/my_agents.html", context)
