"""The audit trail: filters, keyset pages, export links, and whether the hash chain is intact."""

from __future__ import annotations

from django.core.cache import cache
from django.db.models import Q
from django.shortcuts import render
from django.utils import timezone

from accounts.roles import can_read_all
from audit import services as audit
from audit.checkpoints import sink_status
from audit.models import AuditEvent, AuditJti
from console.views._common import (
    CappedCount,
    active_filters,
    console_view,
    page_or_partial,
    sorted_page,
)
from console.views.activity import since_of
from identities.selectors import agents_for

CHAIN_STATUS_KEY = "console:audit-chain-status"
CHAIN_STATUS_SECONDS = 300
# Only the orders an index serves on the whole trail: by number (the primary key) and by time
# (audit_at_id_idx), each either way, id breaking ties.
AUDIT_SORTS = {"id": None, "when": "at"}
AUDIT_DEFAULT_SORT = "-id"
AUDIT_COLUMNS = (
    ("id", "#"),
    ("when", "When"),
    ("", "Actor"),
    ("", "Verb"),
    ("", "Target"),
    ("", "Change"),
    ("", "Reason"),
)
# A credential's expiry is listed by jti in its sweep chunk's event: at most this many are looked up.
JTI_EVENTS = 50


def audit_for(user):
    """Admins and auditors read the whole trail; owners only the events about their own agents."""
    qs = AuditEvent.objects.all()
    if can_read_all(user):
        return qs
    return qs.filter(agent_id__in=agents_for(user).order_by().values("id"))


def _listed_in_chunk(jti: str, kind: str) -> Q:
    """A credential expired by the sweep is listed in its chunk's ``credentials.expired`` event. The
    event ids are read first (audit_jti_idx), so the trail is searched by primary key, never by a
    subquery the planner would test row by row."""
    if kind != "credential" or not jti:
        return Q(pk__in=[])
    ids = list(AuditJti.objects.filter(jti=jti).values_list("event_id", flat=True)[:JTI_EVENTS])
    return Q(id__in=ids)


def search_audit(qs, *, actor: str = "", target: str = ""):
    """The audit list's searches, each served by an index (audit/models.py):

    - ``actor``: a case-insensitive prefix of the username or SPIFFE ID (audit_actor_prefix_idx);
    - ``target``: a prefix of the target's id, a case-insensitive prefix of its label
      (audit_target_id_prefix_idx, audit_target_label_prefix_idx), the jti of a credential whose
      expiry a sweep recorded, or ``kind:<id prefix>`` (e.g. ``agent:3f2a``).
    """
    if actor:
        qs = qs.filter(actor__istartswith=actor)
    if target:
        found = (
            Q(target_id__startswith=target)
            | Q(target_label__istartswith=target)
            | _listed_in_chunk(target, "credential")
        )
        kind, colon, ident = target.partition(":")
        if colon and kind.isidentifier() and ident:
            # "agent:3f2a": that kind of target, by id prefix (a SPIFFE ID or a label with a colon
            # in it still matches as a whole, above).
            found |= Q(target_type=kind, target_id__startswith=ident) | _listed_in_chunk(ident, kind)
        qs = qs.filter(found)
    return qs


@console_view()
def audit_list(request):
    qs = audit_for(request.user)
    get = request.GET
    filters = {k: get.get(k, "").strip()[:200] for k in ("actor", "verb", "target", "since")}
    qs = search_audit(qs, actor=filters["actor"], target=filters["target"])
    if filters["verb"]:
        qs = (
            qs.filter(verb=filters["verb"])
            if "." in filters["verb"]
            else qs.filter(verb__startswith=filters["verb"] + ".")
        )
    since = since_of(filters["since"])
    if since is not None:
        qs = qs.filter(at__gte=since)
    page, sorted_context = sorted_page(qs, request, AUDIT_SORTS, AUDIT_DEFAULT_SORT, AUDIT_COLUMNS)
    context = {
        **sorted_context,
        "count": CappedCount(qs, page).text("event"),
        "filters": filters,
        "active_filters": active_filters(
            ("actor", "actor starts with", filters["actor"]),
            ("verb", "verb" if "." in filters["verb"] else "verb starts with", filters["verb"]),
            ("target", "target starts with", filters["target"]),
            ("since", "since", filters["since"]),
        ),
    }
    if not request.htmx:
        # A checkpoint that did not reach the external sink is shown, never silent.
        context["sink"] = sink_status()
    return page_or_partial(request, "console/audit.html", "console/_audit_rows.html", context)


@console_view()
def audit_chain_status(request):
    """Loaded by the audit page after it renders (the walk reads every row), cached a few minutes."""
    status = cache.get(CHAIN_STATUS_KEY)
    if status is None or request.GET.get("recheck") == "1":
        result = audit.verify_chain()
        status = {"ok": result.ok, "checked": result.checked, "first_bad": result.first_bad, "at": timezone.now()}
        cache.set(CHAIN_STATUS_KEY, status, CHAIN_STATUS_SECONDS)
    return render(request, "console/_chain_status.html", {"status": status})
