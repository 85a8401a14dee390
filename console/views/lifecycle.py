"""The lifecycle in the browser: register an agent and an instance, pause/resume/retire one
instance, revoke one credential. Every page calls the same service as the API (identities.services,
tasks.lifecycle): the rules, scoping and audit rows are theirs; these views only read forms."""

from __future__ import annotations

import json

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.roles import AGENT_OWNER, IDENTITY_ADMIN, is_admin
from console.views._common import console_view, done, form_number, refused, split_list
from core.errors import DomainError
from identities import services as identities
from identities.permissions import can_manage
from identities.selectors import agents_for, credentials_for, instances_for
from tasks import lifecycle

AGENT_LABELS = {
    "slug": ("Slug", "a-slug"),
    "name": ("Name", "a-name"),
    "ceiling": ("Ceiling", "a-ceiling"),
    "max_envelope_seconds": ("Longest envelope", "a-max"),
    "owner": ("Owner", "a-owner"),
}
INSTANCE_LABELS = {"public_jwk": ("Public key (JWK)", "i-jwk"), "label": ("Label", "i-label"), "agent": ("Agent", "")}


def _summary(error: DomainError | None, labels: dict) -> dict | None:
    if error is None:
        return None
    message = error.message
    for name, (label, _) in labels.items():
        message = message.replace(name, label.lower())
    label, anchor = labels.get(error.field or "", (error.field or "", ""))
    return {"label": label, "anchor": anchor, "message": message}


@console_view(AGENT_OWNER, IDENTITY_ADMIN)
def agent_register(request):
    """Register an agent (identities.services.register_agent). An owner registers their own; an
    admin may name another owner. A ceiling asked by someone who needs approval waits for it."""
    values = {"max_envelope_seconds": "3600"}
    error = None
    status = 200
    if request.method == "POST":
        values = request.POST.dict()
        owner = None
        try:
            wanted = values.get("owner", "").strip()
            if wanted and is_admin(request.user):
                owner = get_user_model().objects.filter(username=wanted, is_active=True).first()
                if owner is None:
                    raise DomainError("no active person has this username", field="owner")
            agent = identities.register_agent(
                actor=request.user,
                slug=values.get("slug", "").strip(),
                name=values.get("name", "").strip(),
                description=values.get("description", "").strip(),
                ceiling=split_list(values.get("ceiling")),
                max_envelope_seconds=form_number(values.get("max_envelope_seconds", "")),
                owner=owner,
                request=request,
            )
        except DomainError as exc:
            error, status = exc, 400
        else:
            waiting = identities.pending_change_of(agent) is not None
            note = " Its ceiling waits for an identity admin's approval." if waiting else ""
            return done(request, reverse("agent-page", args=[agent.slug]), f"Agent {agent.slug} registered.{note}")
    context = {
        "values": values,
        "summary": _summary(error, AGENT_LABELS),
        "error": error,
        "admin": is_admin(request.user),
    }
    return render(request, "console/agent_register.html", context, status=status)


@console_view(AGENT_OWNER, IDENTITY_ADMIN)
def instance_register(request, slug):
    """Register an instance of an agent from its public key (identities.services.register_instance)."""
    agent = get_object_or_404(agents_for(request.user), slug=slug)
    if not can_manage(request.user, agent):
        raise DjangoPermissionDenied("Only identity admins and the agent's owner register its instances.")
    values: dict = {}
    error = None
    status = 200
    if request.method == "POST":
        values = request.POST.dict()
        try:
            try:
                jwk = json.loads(values.get("public_jwk", ""))
            except ValueError:
                raise DomainError("paste the public key as JSON (a JWK)", field="public_jwk") from None
            instance = identities.register_instance(
                agent=agent, actor=request.user, public_jwk=jwk, label=values.get("label", "").strip(), request=request
            )
        except DomainError as exc:
            error, status = exc, 400
        else:
            return done(
                request,
                reverse("agent-page", args=[agent.slug]),
                f"Instance {instance.label or instance.id} registered: {instance.spiffe_id}",
            )
    context = {"agent": agent, "values": values, "summary": _summary(error, INSTANCE_LABELS), "error": error}
    return render(request, "console/instance_register.html", context, status=status)


_INSTANCE_VERBS = {
    "pause": (lifecycle.pause_instance, "paused"),
    "resume": (lifecycle.resume_instance, "resumed"),
    "retire": (lifecycle.retire_instance, "retired"),
}


@require_POST
@console_view()
def instance_lifecycle(request, pk):
    """Pause, resume or retire one instance (tasks.lifecycle), the verb chosen in the form."""
    verb = request.POST.get("verb", "")
    instance = get_object_or_404(instances_for(request.user).select_related("agent"), pk=pk)
    back = reverse("agent-page", args=[instance.agent.slug])
    if verb not in _INSTANCE_VERBS:
        raise DjangoPermissionDenied("Unknown action.")
    if not can_manage(request.user, instance.agent):
        raise DjangoPermissionDenied("Only identity admins and the agent's owner change its instances.")
    name = instance.label or str(instance.id)
    if request.POST.get("confirm") != "yes":
        return refused(request, back, DomainError(f"tick the box to confirm you mean to {verb} {name}"))
    service, past = _INSTANCE_VERBS[verb]
    try:
        service(
            instance=instance, actor=request.user, reason=request.POST.get("reason", "").strip()[:500], request=request
        )
    except DomainError as exc:
        return refused(request, back, exc)
    return done(request, back, f"Instance {name} {past}.")


@require_POST
@console_view()
def credential_revoke(request, jti):
    credential = get_object_or_404(credentials_for(request.user).select_related("instance__agent"), jti=jti)
    back = request.POST.get("next", "")
    if not back.startswith("/") or back.startswith("//"):
        back = reverse("agent-page", args=[credential.instance.agent.slug])
    if not can_manage(request.user, credential.instance.agent):
        raise DjangoPermissionDenied("Only identity admins and the agent's owner revoke its credentials.")
    try:
        lifecycle.revoke_credential(
            credential=credential,
            actor=request.user,
            reason=request.POST.get("reason", "").strip()[:500] or "revoked from the console",
            request=request,
        )
    except DomainError as exc:
        return refused(request, back, exc)
    return done(request, back, f"Credential {credential.jti[:12]}… revoked, with any delegated from it.")
