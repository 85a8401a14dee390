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
from console.views._common import KeysetPage, active_filters, console_view, page_or_partial
from console.views.activity import since_of
from identities.selectors import agents_for

CHAIN_STATUS_KEY = "console:audit-chain-status"
CHAIN_STATUS_SECONDS = 300


def audit_for(user):
    """Admins and auditors read the whole trail; owners only the events about their own agents."""
    qs = AuditEvent.objects.all()
    if can_read_all(user):
        return qs
    return qs.filter(agent_id__in=agents_for(user).order_by().values("id"))


def _listed_in_chunk(jti: str, kind: str) -> Q:
    """A credential expired by the sweep is listed in its chunk's ``credentials.expired`` event."""
    if kind != "credential":
        return Q(pk__in=[])
    return Q(id__in=AuditJti.objects.filter(jti=jti).values("event_id"))


@console_view()
def audit_list(request):
    qs = audit_for(request.user)
    get = request.GET
    filters = {k: get.get(k, "").strip()[:200] for k in ("actor", "verb", "target", "since")}
    if filters["actor"]:
        qs = qs.filter(actor=filters["actor"])
    if filters["verb"]:
        qs = (
            qs.filter(verb=filters["verb"])
            if "." in filters["verb"]
            else qs.filter(verb__startswith=filters["verb"] + ".")
        )
    if filters["target"]:
        kind, _, ident = filters["target"].partition(":")
        qs = (
            qs.filter(Q(target_type=kind, target_id=ident) | _listed_in_chunk(ident, kind))
            if ident
            else qs.filter(Q(target_id=kind) | Q(target_label=kind) | _listed_in_chunk(kind, "credential"))
        )
    since = since_of(filters["since"])
    if since is not None:
        qs = qs.filter(at__gte=since)
    context = {
        "page": KeysetPage(qs, request),
        "filters": filters,
        "active_filters": active_filters(
            ("actor", "actor is", filters["actor"]),
            ("verb", "verb" if "." in filters["verb"] else "verb starts with", filters["verb"]),
            ("target", "target", filters["target"]),
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
