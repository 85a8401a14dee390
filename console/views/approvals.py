"""The approval queue: pending envelopes, oldest first, decided inline (htmx) or by plain form post."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.db.models import Q
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accounts.roles import IDENTITY_ADMIN
from console.stepup import step_up_needed, step_up_url
from console.views._common import (
    active_filters,
    console_view,
    done,
    refused,
    sort_choice,
    sort_column,
    sort_order,
)
from core.errors import DomainError
from identities import services as identity_services
from identities.selectors import agents_for, pending_agent_changes_for
from tasks import services
from tasks.models import Approval, TaskEnvelope
from tasks.policy import active_policy
from tasks.selectors import envelopes_for, pending_breakdown

QUEUE_LIMIT = 25  # a screenful: admins work from the oldest; 'Next' pages on by keyset
# The queue holds only pending envelopes (a bounded set, expired after a day), so any shown column
# with a non-null value may order it; the envelope id breaks ties and carries the keyset cursor.
QUEUE_SORTS = {
    "waiting": "created_at",
    "agent": "agent__slug",
    "intent": "intent",
    "duration": "duration_seconds",
    "requested": "requested_by__username",
}
QUEUE_DEFAULT_SORT = "waiting"
QUEUE_COLUMNS = (
    ("", "Select"),
    ("waiting", "Waiting"),
    ("agent", "Agent · instance · owner"),
    ("intent", "Intent"),
    ("", "Scopes · resources"),
    ("duration", "Duration · budget"),
    ("requested", "Requested by"),
    ("", "Approvals"),
    ("", "Decision"),
)


def approval_block(envelope: TaskEnvelope, user) -> str | None:
    """Why this admin cannot approve this envelope, shown on a disabled button before the click."""
    refusal = services.separation_of_duties_refusal(envelope=envelope, actor=user)
    if refusal:
        return refusal
    if any(a.by_id == user.pk for a in envelope.approvals.all()):
        return services.ALREADY_DECIDED
    return None


def queue_row(envelope: TaskEnvelope, user) -> dict:
    approvals = [a for a in envelope.approvals.all() if a.decision == Approval.Decision.APPROVE]
    policy = active_policy()
    return {
        "envelope": envelope,
        "approvals": approvals,
        "block": approval_block(envelope, user),
        "scope_risks": [(scope, policy.risk_of_scope(scope)) for scope in envelope.scopes],
    }


def pending_queryset(user):
    return (
        envelopes_for(user).filter(state=TaskEnvelope.State.PENDING).select_related("instance__agent", "agent__owner")
    )


@console_view(IDENTITY_ADMIN)
def queue(request):
    qs = pending_queryset(request.user)
    filters = {
        "risk": request.GET.get("risk", ""),
        "agent": request.GET.get("agent", "").strip(),
        "owner": request.GET.get("owner", "").strip(),
    }
    if filters["risk"] in TaskEnvelope.Risk.values:
        qs = qs.filter(risk=filters["risk"])
    else:
        filters["risk"] = ""
    # Parts of names match ('invoice' finds invoice-triage): agents and people are small tables.
    if filters["agent"]:
        qs = qs.filter(Q(agent__slug__icontains=filters["agent"]) | Q(agent__name__icontains=filters["agent"]))
    if filters["owner"]:
        qs = qs.filter(agent__owner__username__icontains=filters["owner"])
    sort = sort_choice(request, QUEUE_SORTS, QUEUE_DEFAULT_SORT)
    field = QUEUE_SORTS[sort.lstrip("-")]
    after = _after(request.GET.get("after", ""), field)
    if after is not None:
        # Rows past the cursor's envelope in this order: a later key, or the same key and a later id.
        value, last_id = after
        past = "lt" if sort.startswith("-") else "gt"
        qs = qs.filter(Q(**{f"{field}__{past}": value}) | Q(**{field: value, f"id__{past}": last_id}))
    envelopes = list(qs.order_by(*sort_order(sort, QUEUE_SORTS))[: QUEUE_LIMIT + 1])
    shown = envelopes[:QUEUE_LIMIT]
    context = {
        "rows": [queue_row(e, request.user) for e in shown],
        "next_after": shown[-1].id if len(envelopes) > QUEUE_LIMIT else None,
        "after": after,
        "sort": sort,
        "sort_param": "" if sort == QUEUE_DEFAULT_SORT else sort,
        "columns": [sort_column(sort, key, label, hidden=label == "Select") for key, label in QUEUE_COLUMNS],
        "filters": filters,
        "active_filters": active_filters(
            ("risk", "risk is", filters["risk"]),
            ("agent", "agent contains", filters["agent"]),
            ("owner", "owner contains", filters["owner"]),
        ),
        "risks": TaskEnvelope.Risk.choices,
        "step_up": _step_up_notice(request),
    }
    if not request.htmx:
        context["pending"] = pending_breakdown(request.user)
        context["ceiling_changes"] = ceiling_change_rows(request.user)
    template = "console/_queue_rows.html" if request.htmx else "console/approvals.html"
    return render(request, template, context)


def _step_up_notice(request) -> dict | None:
    """Said before the click: this session must re-authenticate before a high-risk approval."""
    reason = step_up_needed(request)
    return {"reason": reason, "url": step_up_url(request, request.get_full_path())} if reason else None


def _after(value: str, field: str):
    """(its ``field``, its id) for the envelope a keyset page starts after (decided since or not),
    or None: a bad value shows the first page."""
    try:
        key = uuid.UUID(value) if value else None
    except ValueError:
        return None
    if key is None:
        return None
    return TaskEnvelope.objects.filter(pk=key).values_list(field, "id").first()


def _back(request, default: str) -> str:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


class StepUpRequired(DomainError):
    """A high-risk approval from a session whose sign-in is not recent enough (console/stepup.py)."""

    def __init__(self, message: str, *, step_up_url: str):
        super().__init__(message)
        self.step_up_url = step_up_url


def _decide(request, pk, verb: str):
    envelope = get_object_or_404(envelopes_for(request.user), pk=pk)
    comment = request.POST.get("comment", "")
    error = None
    try:
        if verb == "approve" and envelope.risk == TaskEnvelope.Risk.HIGH and (why := step_up_needed(request)):
            raise StepUpRequired(why, step_up_url=step_up_url(request, _back(request, reverse("approval-queue"))))
        if verb == "approve":
            services.approve_envelope(envelope=envelope, actor=request.user, comment=comment, request=request)
        else:
            services.deny_envelope(envelope=envelope, actor=request.user, comment=comment, request=request)
    except DomainError as exc:
        error = exc
    envelope = envelopes_for(request.user).select_related("instance__agent", "agent__owner").get(pk=pk)
    if request.htmx:
        context = {"error": error, "verb": verb, "comment": comment if error else ""}
        if envelope.state == TaskEnvelope.State.PENDING:
            context["row"] = queue_row(envelope, request.user)
        else:
            context["decided"] = envelope
        return render(request, "console/_queue_decision.html", context)
    if isinstance(error, StepUpRequired):
        messages.error(request, error.message)
        return redirect(error.step_up_url)
    if error:
        messages.error(request, f"{error.field + ': ' if error.field else ''}{error.message}")
    elif envelope.state == TaskEnvelope.State.PENDING:
        messages.success(request, f"Your approval is recorded; {envelope.required_approvals} needed in all.")
    else:
        messages.success(request, f"Envelope {envelope.state}: {envelope.intent[:60]}")
    return redirect(_back(request, reverse("approval-queue")))


@require_POST
@console_view(IDENTITY_ADMIN)
def approve(request, pk):
    return _decide(request, pk, "approve")


@require_POST
@console_view(IDENTITY_ADMIN)
def deny(request, pk):
    return _decide(request, pk, "deny")


BULK_LIMIT = QUEUE_LIMIT


@require_POST
@console_view(IDENTITY_ADMIN)
def bulk_decide(request):
    """Approve or deny the ticked envelopes with one shared comment. Each is decided by the same
    service as a single click — separation of duties, quorum (a bulk click is one approval per
    envelope), step-up for high risk and the audit row all apply per envelope — and the summary
    says what was and was not done, and why."""
    verb = request.POST.get("verb", "")
    if verb not in ("approve", "deny"):
        messages.error(request, "Choose Approve selected or Deny selected.")
        return redirect(_back(request, reverse("approval-queue")))
    ids = []
    for value in request.POST.getlist("envelope")[:BULK_LIMIT]:
        try:
            ids.append(uuid.UUID(value))
        except ValueError:
            continue
    if not ids:
        messages.error(request, "Tick at least one envelope first.")
        return redirect(_back(request, reverse("approval-queue")))
    comment = request.POST.get("comment", "")
    envelopes = {e.pk: e for e in envelopes_for(request.user).filter(pk__in=ids)}
    done_rows, refused_rows = [], []
    for pk in ids:
        envelope = envelopes.get(pk)
        if envelope is None:
            refused_rows.append(("an envelope", "not found"))
            continue
        try:
            if verb == "approve" and envelope.risk == TaskEnvelope.Risk.HIGH and (why := step_up_needed(request)):
                raise DomainError(why)
            if verb == "approve":
                envelope = services.approve_envelope(
                    envelope=envelope, actor=request.user, comment=comment, request=request
                )
            else:
                envelope = services.deny_envelope(
                    envelope=envelope, actor=request.user, comment=comment, request=request
                )
        except DomainError as exc:
            refused_rows.append((envelope.intent[:60], exc.message))
            continue
        done_rows.append((envelope.intent[:60], envelope.state))
    past = "approved" if verb == "approve" else "denied"
    if done_rows:
        names = "; ".join(
            f"“{intent}”" + ("" if state != TaskEnvelope.State.PENDING else " (still needs another admin)")
            for intent, state in done_rows
        )
        messages.success(request, f"{past.capitalize()} {len(done_rows)} of {len(ids)}: {names}.")
    for intent, why in refused_rows:
        messages.error(request, f"Not {past}: “{intent}” — {why}.")
    return redirect(_back(request, reverse("approval-queue")))


# --- pending changes of ceiling ------------------------------------------------------------------


def ceiling_change_rows(user) -> list[dict]:
    """The queue's own section for ceilings: what is in force, what is asked, and why this admin may
    not decide it (their own request), said before the click."""
    rows = []
    for change in pending_agent_changes_for(user)[:QUEUE_LIMIT]:
        agent = change.agent
        rows.append(
            {
                "change": change,
                "agent": agent,
                "added": sorted(set(change.ceiling) - set(agent.ceiling)),
                "kept": sorted(set(change.ceiling) & set(agent.ceiling)),
                "longer": change.max_envelope_seconds > agent.max_envelope_seconds,
                "block": identity_services.approval_refusal(change=change, actor=user),
            }
        )
    return rows


@require_POST
@console_view(IDENTITY_ADMIN)
def decide_ceiling(request, slug, verb):
    """Approve or deny an agent's pending change of ceiling, with a comment (same service as the API)."""
    agent = get_object_or_404(agents_for(request.user), slug=slug)
    back = _back(request, reverse("approval-queue"))
    decision = {"approve": identity_services.approve_pending_change, "deny": identity_services.deny_pending_change}
    if verb not in decision:
        return refused(request, back, DomainError("choose approve or deny"))
    comment = request.POST.get("comment", "").strip()[:1000]
    try:
        decision[verb](agent=agent, actor=request.user, comment=comment, request=request)
    except DomainError as exc:
        return refused(request, back, exc)
    past = "approved" if verb == "approve" else "denied"
    return done(request, back, f"Ceiling change for {agent.slug} {past}.")
