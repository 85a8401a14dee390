"""The activity record (high volume): filters, newest first, keyset pages, a link to the API export."""

from __future__ import annotations

import uuid
from datetime import timedelta
from urllib.parse import urlencode

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from console.views._common import (
    CappedCount,
    active_filters,
    console_view,
    page_or_partial,
    sorted_page,
)
from identities.models import Agent
from tasks.models import ActivityEvent
from tasks.selectors import activity_for

AGENT_MATCHES = 50
# Only the orders an index serves on millions of rows: by when it happened, either way, id breaking
# ties (activity_when_idx, and activity_agent_when_idx with an agent filter, read in either direction).
ACTIVITY_SORTS = {"when": "occurred_at"}
ACTIVITY_DEFAULT_SORT = "-when"
ACTIVITY_COLUMNS = (
    ("when", "When"),
    ("", "Kind"),
    ("", "Agent"),
    ("", "Scope"),
    ("", "Resource"),
    ("", "Decision"),
    ("", "Reason / outcome"),
)
SINCE_CHOICES = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}


def since_of(value: str):
    if value in SINCE_CHOICES:
        return timezone.now() - SINCE_CHOICES[value]
    parsed = parse_datetime(value) if value else None
    if parsed is not None and timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed)
    return parsed


@console_view()
def activity_list(request):
    qs = activity_for(request.user).select_related("envelope")
    get = request.GET
    filters = {k: get.get(k, "").strip()[:200] for k in ("kind", "agent", "outcome", "drift", "envelope", "since")}
    if filters["kind"] in ActivityEvent.Kind.values:
        qs = qs.filter(kind=filters["kind"])
    else:
        filters["kind"] = ""
    if filters["agent"]:
        # Part of a slug matches ('invoice' finds invoice-triage). The agents are resolved first (a
        # small table) so the page reads activity_agent_when_idx (agent, time, id) for each.
        agent_ids = list(
            Agent.objects.filter(slug__icontains=filters["agent"]).values_list("id", flat=True)[:AGENT_MATCHES]
        )
        qs = qs.filter(agent_id__in=agent_ids) if agent_ids else qs.none()
    if filters["outcome"] == "allowed":
        qs = qs.filter(allow=True)
    elif filters["outcome"] == "denied":
        qs = qs.filter(allow=False)
    else:
        filters["outcome"] = ""
    if filters["drift"] == "1":
        qs = qs.filter(drift=True)
    else:
        filters["drift"] = ""
    if filters["envelope"]:
        try:
            qs = qs.filter(envelope_id=uuid.UUID(filters["envelope"]))
        except ValueError:
            filters["envelope"] = ""
    since = since_of(filters["since"])
    if since is not None:
        qs = qs.filter(occurred_at__gte=since)
    page, sorted_context = sorted_page(qs, request, ACTIVITY_SORTS, ACTIVITY_DEFAULT_SORT, ACTIVITY_COLUMNS)
    api_params = {
        k: v
        for k, v in {
            "kind": filters["kind"],
            "envelope": filters["envelope"],
            "since": since.isoformat() if since else "",
        }.items()
        if v
    }
    context = {
        **sorted_context,
        "count": CappedCount(qs, page).text("event"),
        "filters": filters,
        "kinds": ActivityEvent.Kind.choices,
        "active_filters": active_filters(
            ("kind", "kind is", filters["kind"]),
            ("agent", "agent contains", filters["agent"]),
            ("outcome", "decision", filters["outcome"]),
            ("drift", "drift only", "yes" if filters["drift"] else ""),
            ("envelope", "envelope", filters["envelope"]),
            ("since", "since", filters["since"]),
        ),
        "export_url": "/api/v1/events/" + (f"?{urlencode(api_params)}" if api_params else ""),
    }
    return page_or_partial(request, "console/activity.html", "console/_activity_rows.html", context)
