"""One envelope's page and its verbs, and the request form that validates exactly like the API."""

from __future__ import annotations

import re
from collections import defaultdict

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.roles import AGENT_OWNER, IDENTITY_ADMIN, is_admin
from audit.models import AuditEvent
from console.views._common import console_view, done, form_number, refused, split_list
from console.views.approvals import approval_block
from core.audiences import default_audience
from core.errors import DomainError
from identities.models import Agent, Instance
from identities.permissions import can_manage
from identities.selectors import credentials_for, instances_for
from tasks import lifecycle, services
from tasks.models import TaskEnvelope
from tasks.policy import active_policy
from tasks.resources import is_unbounded
from tasks.selectors import activity_for, envelopes_for

RECENT_ACTIVITY = 50


def credential_tree(credentials) -> list:
    """Credentials in delegation order, each delegated one under its parent with a ``depth``."""
    jtis = {c.jti for c in credentials}
    children = defaultdict(list)
    for credential in credentials:
        children[credential.parent_id if credential.parent_id in jtis else None].append(credential)
    out = []

    def walk(parent, depth):
        for child in sorted(children.get(parent, []), key=lambda c: c.issued_at):
            child.depth = depth
            out.append(child)
            walk(child.jti, depth + 1)

    walk(None, 0)
    return out


@console_view()
def envelope_detail(request, pk):
    user = request.user
    envelope = get_object_or_404(
        envelopes_for(user).select_related("instance__agent", "agent__owner", "supersedes"), pk=pk
    )
    timeline = list(AuditEvent.objects.filter(target_type="envelope", target_id=str(envelope.id)).order_by("id")[:200])
    credentials = list(credentials_for(user).filter(envelope=envelope).order_by("issued_at")[:500])
    policy = active_policy()
    context = {
        "envelope": envelope,
        "timeline": timeline,
        "credentials": credential_tree(credentials),
        "activity": list(activity_for(user).filter(envelope=envelope).order_by("-id")[:RECENT_ACTIVITY]),
        "successor": TaskEnvelope.objects.filter(supersedes=envelope).only("id", "state").first(),
        "scope_risks": [(s, policy.risk_of_scope(s)) for s in envelope.scopes],
        "can_manage": can_manage(user, envelope.agent),
        "is_live": envelope.state in TaskEnvelope.LIVE_STATES,
        "can_decide": is_admin(user) and envelope.state == TaskEnvelope.State.PENDING,
        "block": approval_block(envelope, user) if is_admin(user) else None,
        "approvals": [a for a in envelope.approvals.all() if a.decision == "approve"],
    }
    return render(request, "console/envelope_detail.html", context)


def _request_fields(post) -> dict:
    return {
        "intent": post.get("intent", ""),
        "scopes": split_list(post.get("scopes")),
        "resources": split_list(post.get("resources")),
        "duration_seconds": form_number(post.get("duration_seconds", "")),
        "max_actions": form_number(post.get("max_actions", "")),
        "may_delegate": post.get("may_delegate") in ("on", "true", "1"),
        "delegation_depth": form_number(post.get("delegation_depth") or "0"),
        # Empty: the deployment's default audience (a re-task keeps the old envelope's).
        "audiences": split_list(post.get("audiences")) or None,
    }


# The form's labels, for errors the service reports by API field name.
FIELD_LABELS = {
    "instance": ("Instance", "f-instance"),
    "intent": ("Intent", "f-intent"),
    "scopes": ("Scopes", "f-scopes"),
    "resources": ("Resources", "f-resources"),
    "audiences": ("Audiences", "f-audiences"),
    "duration_seconds": ("Duration", "f-duration"),
    "max_actions": ("Action budget", "f-actions"),
    "may_delegate": ("May delegate", "f-delegate"),
    "delegation_depth": ("Delegation depth", "f-depth"),
}


def error_summary(error: DomainError | None) -> dict | None:
    """The error as the form says it: the field's label (linked to the field), and API names in
    the message replaced by the labels people see."""
    if error is None:
        return None
    message = error.message
    for name, (label, _) in FIELD_LABELS.items():
        message = message.replace(name, label.lower())
    label, anchor = FIELD_LABELS.get(error.field or "", (error.field or "", ""))
    return {"label": label, "anchor": anchor, "message": message}


def suspicious_patterns(resources: list[str]) -> list[str]:
    """Resource patterns that are probably a slip: three or more wildcards in a row ('repo:acme/***'
    matches what 'repo:acme/**' does, and reads as if it meant more), or a pattern that matches
    every resource, or every resource of a type (the same reading of a pattern as the risk rule's)."""
    warnings = []
    for pattern in resources:
        if "***" in pattern:
            tidy = re.sub(r"\*{3,}", "**", pattern)
            warnings.append(f"“{pattern}” repeats a wildcard; it matches exactly what “{tidy}” matches.")
        elif is_unbounded(pattern):
            kind, colon, _name = pattern.partition(":")
            of_type = f" of type {kind}" if colon and "*" not in kind else ""
            warnings.append(f"“{pattern}” matches every resource{of_type}.")
    return warnings


class PatternWarning(Exception):
    def __init__(self, warnings: list[str]):
        super().__init__("suspicious resource patterns")
        self.warnings = warnings


@console_view(AGENT_OWNER, IDENTITY_ADMIN)
def envelope_new(request):
    """GET: the form (``?instance=<id>`` preselects). POST: ``request_envelope``, errors on their field."""
    user = request.user
    instances = instances_for(user).filter(status=Instance.Status.ACTIVE, agent__status=Agent.Status.ACTIVE)
    if not is_admin(user):
        instances = instances.filter(agent__owner=user)
    instances = list(instances.order_by("agent__slug", "created_at")[:500])
    values = {
        "instance": request.GET.get("instance", ""),
        "duration_seconds": "1800",
        "max_actions": "50",
        "delegation_depth": "0",
    }
    error = None
    pattern_warnings: list[str] = []
    status = 200
    if request.method == "POST":
        values = request.POST.dict()
        chosen = next((i for i in instances if str(i.id) == values.get("instance")), None)
        try:
            if chosen is None:
                raise DomainError("choose one of your active instances", field="instance")
            warnings = suspicious_patterns(split_list(request.POST.get("resources")))
            if warnings and request.POST.get("confirm_patterns") != "1":
                raise PatternWarning(warnings)
            envelope = services.request_envelope(
                actor=user, instance=chosen, request=request, **_request_fields(request.POST)
            )
        except PatternWarning as exc:
            pattern_warnings, status = exc.warnings, 400
        except DomainError as exc:
            error, status = exc, 400
        else:
            url = reverse("envelope-page", args=[envelope.id])
            if request.htmx:
                response = HttpResponse(status=204)
                response["HX-Redirect"] = url
                return response
            return done(request, url, f"Envelope requested ({envelope.state}, {envelope.risk} risk).")
    context = {
        "instances": instances,
        "values": values,
        "error": error,
        "summary": error_summary(error),
        "pattern_warnings": pattern_warnings,
        "default_audience": default_audience(),
    }
    if request.htmx:
        # htmx swaps only 2xx answers by default; the form with its error is the answer here.
        return render(request, "console/_envelope_form.html", context)
    return render(request, "console/envelope_new.html", context, status=status)


def _verb_target(request, pk):
    envelope = get_object_or_404(envelopes_for(request.user).select_related("instance__agent", "agent__owner"), pk=pk)
    if not can_manage(request.user, envelope.agent):
        raise DjangoPermissionDenied("Only identity admins and the agent's owner may change this envelope.")
    return envelope, reverse("envelope-page", args=[envelope.id])


@require_POST
@console_view()
def envelope_revoke(request, pk):
    envelope, back = _verb_target(request, pk)
    try:
        lifecycle.revoke_envelope(
            envelope=envelope, actor=request.user, reason=request.POST.get("reason", "").strip()[:500], request=request
        )
    except DomainError as exc:
        return refused(request, back, exc)
    return done(request, back, "Envelope revoked; its credentials are revoked with it.")


@require_POST
@console_view()
def envelope_complete(request, pk):
    envelope, back = _verb_target(request, pk)
    try:
        lifecycle.complete_envelope(envelope=envelope, actor=request.user, request=request)
    except DomainError as exc:
        return refused(request, back, exc)
    return done(request, back, "Envelope completed; its credentials are revoked.")


@console_view()
def envelope_retask(request, pk):
    """GET: the re-task form, prefilled. POST: ``retask_envelope`` — a new pending envelope."""
    envelope, _back = _verb_target(request, pk)
    error = None
    status = 200
    values = {
        "intent": envelope.intent,
        "scopes": " ".join(envelope.scopes),
        "resources": "\n".join(envelope.resources),
        "audiences": "\n".join(envelope.audiences),
        "duration_seconds": str(envelope.duration_seconds),
        "max_actions": str(envelope.max_actions),
        "may_delegate": "on" if envelope.may_delegate else "",
        "delegation_depth": str(envelope.delegation_depth),
    }
    if request.method == "POST":
        values = request.POST.dict()
        try:
            new = lifecycle.retask_envelope(
                envelope=envelope, actor=request.user, request=request, **_request_fields(request.POST)
            )
        except DomainError as exc:
            error, status = exc, 400
        else:
            return done(
                request,
                reverse("envelope-page", args=[new.id]),
                "Re-tasked: this new envelope waits for approval; the old one is superseded.",
            )
    context = {
        "envelope": envelope,
        "values": values,
        "error": error,
        "summary": error_summary(error),
        "default_audience": default_audience(),
    }
    return render(request, "console/envelope_retask.html", context, status=status)
