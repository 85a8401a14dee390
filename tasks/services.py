"""Writes for task envelopes: request, approve, deny, revoke, complete, re-task, expire.

Every transition locks the envelope, refuses a wrong from-state (``InvalidTransition`` → 409),
writes its audit event and — when the envelope leaves ``approved``/``active`` — revokes every
credential minted under it, all in one transaction.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, cast

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.roles import is_admin
from audit import services as audit
from audit.services import ActorLike, RequestLike
from core.audiences import clean_audiences, default_audience
from core.errors import InvalidTransition, PermissionDenied, ValidationFailed
from identities.models import Agent, Instance
from identities.permissions import require_can_manage
from identities.validators import RESOURCE_RE, is_scope
from tasks import outbox
from tasks.models import Approval, TaskEnvelope
from tasks.policy import active_policy

if TYPE_CHECKING:
    from django.contrib.auth.models import User

State = TaskEnvelope.State
logger = logging.getLogger(__name__)

MAX_ACTIONS_LIMIT = 1_000_000
MAX_DELEGATION_DEPTH = 5


def _is_owner(actor: ActorLike, agent: Agent) -> bool:
    pk = getattr(actor, "pk", None)
    return pk is not None and agent.owner_id == pk


def _is_rule_actor(actor: ActorLike) -> bool:
    return isinstance(actor, audit.Actor) and actor.type in (
        audit.AuditEvent.ActorType.POLICY,
        audit.AuditEvent.ActorType.SCHEDULER,
    )


def _require_owner_or_admin(actor: ActorLike, agent: Agent, what: str) -> None:
    require_can_manage(actor, agent, what)


# --- request -------------------------------------------------------------------------------------


def _clean_request(
    *,
    agent: Agent,
    scopes: object,
    resources: object,
    duration_seconds: object,
    max_actions: object,
    may_delegate: object,
    delegation_depth: object,
    intent: object,
    audiences: object = None,
) -> dict:
    if not isinstance(intent, str) or not intent.strip():
        raise ValidationFailed("say what the task is for", field="intent")
    if len(intent) > 4000:
        raise ValidationFailed("at most 4000 characters", field="intent")
    if not isinstance(scopes, list) or not scopes:
        raise ValidationFailed("a non-empty list of scopes such as 'github:read'", field="scopes")
    for scope in scopes:
        if not is_scope(scope):
            raise ValidationFailed(f"{str(scope)[:80]!r} is not a scope of the form tool:action", field="scopes")
    outside = sorted(set(scopes) - set(agent.ceiling))
    if outside:
        raise ValidationFailed(f"outside agent {agent.slug}'s ceiling: {', '.join(outside)}", field="scopes")
    if not isinstance(resources, list) or len(resources) > 100:
        raise ValidationFailed("a list of at most 100 resource patterns", field="resources")
    for resource in resources:
        if not isinstance(resource, str) or not RESOURCE_RE.fullmatch(resource):
            raise ValidationFailed("each resource is a pattern of 1 to 512 visible characters", field="resources")
    if isinstance(duration_seconds, bool) or not isinstance(duration_seconds, int) or duration_seconds < 1:
        raise ValidationFailed("a whole number of seconds, at least 1", field="duration_seconds")
    if duration_seconds > agent.max_envelope_seconds:
        raise ValidationFailed(
            f"longer than agent {agent.slug} allows ({agent.max_envelope_seconds} s)", field="duration_seconds"
        )
    if isinstance(max_actions, bool) or not isinstance(max_actions, int) or not 1 <= max_actions <= MAX_ACTIONS_LIMIT:
        raise ValidationFailed(f"a whole number from 1 to {MAX_ACTIONS_LIMIT}", field="max_actions")
    if not isinstance(may_delegate, bool):
        raise ValidationFailed("true or false", field="may_delegate")
    if (
        isinstance(delegation_depth, bool)
        or not isinstance(delegation_depth, int)
        or not 0 <= delegation_depth <= MAX_DELEGATION_DEPTH
    ):
        raise ValidationFailed(f"a whole number from 0 to {MAX_DELEGATION_DEPTH}", field="delegation_depth")
    if delegation_depth and not may_delegate:
        raise ValidationFailed("must be 0 unless may_delegate is true", field="delegation_depth")
    return {
        "intent": intent.strip(),
        "scopes": sorted(set(scopes)),
        "resources": list(dict.fromkeys(resources)),
        "audiences": [default_audience()] if audiences is None else clean_audiences(audiences),
        "duration_seconds": duration_seconds,
        "max_actions": max_actions,
        "may_delegate": may_delegate,
        "delegation_depth": delegation_depth,
    }


def request_envelope(
    *,
    actor: ActorLike,
    instance: Instance,
    intent: object,
    scopes: object,
    resources: object,
    duration_seconds: object,
    max_actions: object,
    may_delegate: object = False,
    delegation_depth: object = 0,
    audiences: object = None,
    supersedes: TaskEnvelope | None = None,
    allow_auto_approve: bool = True,
    request: RequestLike | None = None,
) -> TaskEnvelope:
    """Create a pending envelope (or an approved one when a named policy rule auto-approves it).

    ``audiences`` lists who its credentials may be for; None means the deployment's default only."""
    agent = instance.agent
    _require_owner_or_admin(actor, agent, "request an envelope for this agent")
    if instance.status != Instance.Status.ACTIVE or agent.status != Agent.Status.ACTIVE:
        raise ValidationFailed(
            f"instance is {instance.status} and agent is {agent.status}; both must be active", field="instance"
        )
    fields = _clean_request(
        agent=agent,
        scopes=scopes,
        resources=resources,
        duration_seconds=duration_seconds,
        max_actions=max_actions,
        may_delegate=may_delegate,
        delegation_depth=delegation_depth,
        intent=intent,
        audiences=audiences,
    )
    policy = active_policy()
    verdict = policy.classify(**{k: v for k, v in fields.items() if k not in ("intent", "audiences")})
    if fields["duration_seconds"] > verdict.max_envelope_seconds:
        raise ValidationFailed(
            f"the policy allows at most {verdict.max_envelope_seconds} s for {verdict.risk}-risk envelopes",
            field="duration_seconds",
        )
    # Only a named policy rule approves without a person, and never a re-task.
    auto_rule = verdict.auto_approve_rule if allow_auto_approve else None
    with transaction.atomic():
        envelope = TaskEnvelope(
            instance=instance,
            agent=agent,
            requested_by=cast("User", actor),  # _require_owner_or_admin admitted a person
            risk=verdict.risk,
            required_approvals=0 if auto_rule else max(verdict.required_approvals, 1),
            policy_version=verdict.policy_version,
            auto_approved_by=auto_rule or "",
            supersedes=supersedes,
            parent_envelope=None,
            **fields,
        )
        envelope.save(force_insert=True)
        audit.record(
            "envelope.requested",
            actor=actor,
            target=envelope,
            after={
                **envelope.snapshot(),
                "intent": envelope.intent,
                "required_approvals": envelope.required_approvals,
                "policy_version": envelope.policy_version,
                "instance": str(instance.id),
                "supersedes": str(supersedes.id) if supersedes else None,
                "risk_reasons": list(verdict.reasons),
                "auto_approve_rule": auto_rule,
            },
            request=request,
        )
        if auto_rule:
            _approve_now(envelope, actor=audit.Actor.of_policy(auto_rule), request=request)
        else:
            _after_commit_notify("pending", envelope.id)
    return envelope


def _after_commit_notify(kind: str, envelope_id: uuid.UUID) -> None:
    """Write the notice into the outbox in this transaction; it is published after commit."""
    outbox.enqueue(kind=kind, envelope_id=envelope_id)


def _approve_now(envelope: TaskEnvelope, *, actor: ActorLike, request: RequestLike | None = None) -> None:
    now = timezone.now()
    envelope.approved_at = now
    envelope.expires_at = now + timedelta(seconds=envelope.duration_seconds)
    old = envelope.set_state(State.APPROVED, allowed_from=(State.PENDING,), extra_fields=("approved_at", "expires_at"))
    audit.record(
        "envelope.approved",
        actor=actor,
        target=envelope,
        before={"state": old},
        after={"state": envelope.state, "approved_at": envelope.approved_at, "expires_at": envelope.expires_at},
        request=request,
    )


# --- decisions by admins -------------------------------------------------------------------------


def _lock(envelope: TaskEnvelope) -> TaskEnvelope:
    return TaskEnvelope.objects.select_for_update().select_related("agent", "instance").get(pk=envelope.pk)


def separation_of_duties_refusal(*, envelope: TaskEnvelope, actor: ActorLike) -> str | None:
    """Why ``actor`` may not approve ``envelope`` whatever its state, or None. The console shows
    this before the click; ``approve_envelope`` enforces it."""
    if envelope.requested_by_id == getattr(actor, "pk", None):
        return "nobody approves an envelope they requested"
    if envelope.risk == TaskEnvelope.Risk.HIGH and _is_owner(actor, envelope.agent):
        return "an agent's owner never approves a high-risk envelope for their own agent"
    return None


def pending_deadline(now: datetime | None = None) -> datetime:
    """Pending requests created before this moment have waited longer than the policy allows."""
    return (now or timezone.now()) - timedelta(seconds=active_policy().pending_max_seconds)


def _refuse_if_waited_too_long(envelope: TaskEnvelope) -> None:
    # Expiry never depends on the sweep: a request past the limit cannot be approved even if the
    # sweep has not reached it yet.
    if envelope.created_at <= pending_deadline():
        raise InvalidTransition("this request waited longer than the policy allows and has expired")


ALREADY_DECIDED = "you have already decided on this envelope; one admin counts once"


def approve_envelope(
    *, envelope: TaskEnvelope, actor: ActorLike, comment: str = "", request: RequestLike | None = None
) -> TaskEnvelope:
    """Record one admin's approval; the envelope is approved when the policy's quorum is reached.

    The envelope row is locked first, so concurrent approvals are counted one after the other: the
    one that completes the quorum sees every earlier approval and approves exactly once. The
    unique (envelope, by) constraint makes one admin count once even across two connections."""
    if not is_admin(actor):
        raise PermissionDenied("only identity admins approve envelopes")
    with transaction.atomic():
        envelope = _lock(envelope)
        if envelope.state != State.PENDING:
            raise InvalidTransition(f"envelope is {envelope.state}; only pending envelopes can be approved")
        refusal = separation_of_duties_refusal(envelope=envelope, actor=actor)
        if refusal:
            raise PermissionDenied(refusal)
        _refuse_if_waited_too_long(envelope)
        try:
            with transaction.atomic():
                Approval.objects.create(
                    envelope=envelope, by=cast("User", actor), decision=Approval.Decision.APPROVE, comment=comment or ""
                )
        except IntegrityError:
            raise PermissionDenied(ALREADY_DECIDED) from None
        count = envelope.approvals.filter(decision=Approval.Decision.APPROVE).count()
        audit.record(
            "envelope.approval_recorded",
            actor=actor,
            target=envelope,
            before={"state": envelope.state, "approvals": count - 1},
            after={"state": envelope.state, "approvals": count, "required": envelope.required_approvals},
            reason=comment,
            request=request,
        )
        if count >= envelope.required_approvals:
            _approve_now(envelope, actor=actor, request=request)
            _after_commit_notify("decided", envelope.id)
    return envelope


def deny_envelope(
    *, envelope: TaskEnvelope, actor: ActorLike, comment: str = "", request: RequestLike | None = None
) -> TaskEnvelope:
    if not is_admin(actor):
        raise PermissionDenied("only identity admins deny envelopes")
    if not isinstance(comment, str) or not comment.strip():
        raise ValidationFailed("say why the envelope is denied", field="comment")
    with transaction.atomic():
        envelope = _lock(envelope)
        if envelope.state != State.PENDING:
            raise InvalidTransition(f"envelope is {envelope.state}; only pending envelopes can be denied")
        try:
            with transaction.atomic():
                Approval.objects.create(
                    envelope=envelope, by=cast("User", actor), decision=Approval.Decision.DENY, comment=comment
                )
        except IntegrityError:
            raise PermissionDenied(ALREADY_DECIDED) from None
        deny_pending(envelope, actor=actor, reason=comment, request=request)
    return envelope


def deny_pending(
    envelope: TaskEnvelope,
    *,
    actor: ActorLike,
    reason: str,
    request: RequestLike | None = None,
    notify: bool = True,
) -> None:
    """Deny a pending envelope (locked by the caller, inside its transaction): state, audit row and,
    with ``notify``, the requester's notice once the transaction commits."""
    envelope.end_reason = reason[:500]
    old = envelope.set_state(State.DENIED, allowed_from=(State.PENDING,), extra_fields=("end_reason",))
    audit.record(
        "envelope.denied",
        actor=actor,
        target=envelope,
        before={"state": old},
        after={"state": envelope.state},
        reason=reason,
        request=request,
    )
    if notify:
        _after_commit_notify("decided", envelope.id)


# --- ending a live envelope ----------------------------------------------------------------------
