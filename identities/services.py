"""Writes for agents, instances and credentials. Each use case is one function, used by the API,
the console, Celery tasks and management commands alike.

Every transition locks its row, returns early when already there, refuses a wrong from-state with
``InvalidTransition``, writes its audit event and performs its cascade in one transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.roles import AGENT_OWNER, has_role, is_admin
from audit import services as audit
from audit.services import ActorLike, RequestLike
from core.errors import ChangePending, NoPendingChange, PermissionDenied, ValidationFailed
from identities.jwk import thumbprint, validate_public_jwk
from identities.models import Agent, AgentChange, Instance
from identities.permissions import require_can_manage
from identities.validators import SLUG_RE, is_scope

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# --- validation shared by create and update ------------------------------------------------------


def clean_ceiling(value: object) -> list[str]:
    if not isinstance(value, list):
        raise ValidationFailed("must be a list of scopes such as 'github:read'", field="ceiling")
    if len(value) > 200:
        raise ValidationFailed("at most 200 scopes", field="ceiling")
    for scope in value:
        if not is_scope(scope):
            raise ValidationFailed(f"{str(scope)[:80]!r} is not a scope of the form tool:action", field="ceiling")
    return sorted(set(value))


def clean_max_envelope_seconds(value: object) -> int:
    limit = settings.MANDATE_DEFAULT_MAX_ENVELOPE_SECONDS
    if isinstance(value, bool) or not isinstance(value, int) or value < 60:
        raise ValidationFailed("must be a whole number of seconds, at least 60", field="max_envelope_seconds")
    if value > limit:
        raise ValidationFailed(f"at most {limit} seconds", field="max_envelope_seconds")
    return value


# --- who may manage ------------------------------------------------------------------------------


def _require_manager(actor: ActorLike, agent: Agent | None = None) -> None:
    """People manage agents as identity admins, or as agent owners of their own agents (any agent
    owner may register a new one); auditors and gateways change nothing. Non-person actors (policy
    rules, the scheduler, an instance) reach these functions only through cascades and sweeps the
    code decided on, so they pass."""
    if actor is None or isinstance(actor, audit.Actor):
        return
    if agent is None:
        if is_admin(actor) or has_role(actor, AGENT_OWNER):
            return
        raise PermissionDenied("only the agent's owner or an identity admin may do this")
    require_can_manage(actor, agent)


# --- agents --------------------------------------------------------------------------------------


def register_agent(
    *,
    actor: ActorLike,
    slug: str,
    name: str,
    description: str = "",
    ceiling: list[str],
    max_envelope_seconds: int,
    owner: User | None = None,
    request: RequestLike | None = None,
) -> Agent:
    """Register an agent. Its ceiling is not in force yet: the agent starts with an empty ceiling
    and the requested one as its pending change, which an identity admin other than the requester
    approves (``approve_pending_change``); otherwise an owner could register a second agent with
    a wider ceiling instead of asking."""
    _require_manager(actor)
    if owner is not None and owner != actor and not is_admin(actor):
        raise PermissionDenied("only identity admins may register an agent for another owner")
    if not isinstance(slug, str) or not SLUG_RE.fullmatch(slug):
        raise ValidationFailed("lower-case letters, digits and hyphens, at most 63", field="slug")
    requested = clean_ceiling(ceiling)
    pending = needs_approval(actor) and bool(requested)
    agent = Agent(
        slug=slug,
        name=name,
        description=description or "",
        owner=owner or cast("User", actor),  # _require_manager admitted a person
        ceiling=[] if pending else requested,
        max_envelope_seconds=clean_max_envelope_seconds(max_envelope_seconds),
    )
    try:
        with transaction.atomic():
            agent.save(force_insert=True)
            audit.record("agent.created", actor=actor, target=agent, after=agent.snapshot(), request=request)
            if pending:
                open_change(
                    agent=agent,
                    actor=actor,
                    ceiling=requested,
                    max_envelope_seconds=agent.max_envelope_seconds,
                    request=request,
                )
    except IntegrityError:
        raise ValidationFailed("an agent with this slug exists already", field="slug") from None
    return agent


def update_agent(*, agent: Agent, actor: ActorLike, changes: dict, request: RequestLike | None = None) -> Agent:
    """Change an agent's name or description. Its ceiling and longest envelope change through
    ``tasks.lifecycle.update_agent``, which revokes what a narrowing removes and sends a widening
    for approval."""
    if set(changes) - {"name", "description"}:
        raise ValueError("ceiling and max_envelope_seconds change through tasks.lifecycle.update_agent")
    _require_manager(actor, agent)
    with transaction.atomic():
        agent = Agent.objects.select_for_update().select_related("owner").get(pk=agent.pk)
        apply_agent_fields(agent=agent, actor=actor, fields=changes, request=request)
    return agent


def apply_agent_fields(*, agent: Agent, actor: ActorLike, fields: dict, request: RequestLike | None = None) -> None:
    """Put ``fields`` in force on a locked agent, with one ``agent.updated`` row if anything changed."""
    before = agent.snapshot()
    changed = []
    for field, value in fields.items():
        if getattr(agent, field) != value:
            setattr(agent, field, value)
            changed.append(field)
    if changed:
        agent.save(update_fields=changed)
        audit.record("agent.updated", actor=actor, target=agent, before=before, after=agent.snapshot(), request=request)


# --- pending changes of ceiling and longest envelope ---------------------------------------------


def pending_change_of(agent: Agent) -> AgentChange | None:
    """The agent's pending change: from ``pending_changes`` when the selector prefetched it."""
    prefetched = getattr(agent, "pending_changes", None)
    if prefetched is not None:
        return prefetched[0] if prefetched else None
    return (
        AgentChange.objects.filter(agent=agent, state=AgentChange.State.PENDING).select_related("requested_by").first()
    )


def needs_approval(actor: ActorLike) -> bool:
    """A person's widening waits for another identity admin; code acting for the system (an
    ``audit.Actor`` or nobody: demo data, test factories, never an API caller) applies at once."""
    return actor is not None and not isinstance(actor, audit.Actor)


def is_widening(agent: Agent, ceiling: list[str], max_envelope_seconds: int) -> bool:
    return not set(ceiling) <= set(agent.ceiling) or max_envelope_seconds > agent.max_envelope_seconds


def open_change(
    *, agent: Agent, actor: ActorLike, ceiling: list[str], max_envelope_seconds: int, request: RequestLike | None = None
) -> AgentChange:
    """Record a wider ceiling or longer envelope for approval; the caller holds the agent's lock
    (or just created it). A second pending change is refused with 409 ``change_pending``."""
    if getattr(actor, "pk", None) is None:
        raise PermissionDenied("a change of ceiling is requested by a person, who cannot approve it themself")
    if AgentChange.objects.filter(agent=agent, state=AgentChange.State.PENDING).exists():
        raise ChangePending(
            f"agent {agent.slug} already has a change waiting for approval; ask an identity admin to decide it first"
        )
    change = AgentChange(
        agent=agent,
        ceiling=list(ceiling),
        max_envelope_seconds=max_envelope_seconds,
        requested_by=cast("User", actor),
    )
    try:
        with transaction.atomic():
            change.save(force_insert=True)
    except IntegrityError:  # a concurrent request won the one pending slot
        raise ChangePending(f"agent {agent.slug} already has a change waiting for approval") from None
    audit.record(
        "agent.change_requested",
        actor=actor,
        target=agent,
        before={"ceiling": list(agent.ceiling), "max_envelope_seconds": agent.max_envelope_seconds},
        after={"change": str(change.id), "ceiling": change.ceiling, "max_envelope_seconds": max_envelope_seconds},
        request=request,
    )
    return change


def approval_refusal(*, change: AgentChange, actor: ActorLike, break_glass: bool = False) -> str | None:
    """Why ``actor`` may not decide ``change`` (None: they may). Identity admins other than the
    requester decide; the requester only by the break-glass command. Code acting for the system
    (an ``audit.Actor``: demo data, test factories) passes, as everywhere in these services."""
    if isinstance(actor, audit.Actor):
        return None
    if not is_admin(actor):
        return "only identity admins approve or deny a change of ceiling"
    if getattr(actor, "pk", None) == change.requested_by_id and not break_glass:
        return (
            "a change of ceiling is decided by an identity admin other than the one who requested it "
            "(an installation with a single identity admin: manage.py approve_own_change)"
        )
    return None


def _locked_pending(agent: Agent) -> tuple[Agent, AgentChange]:
    agent = Agent.objects.select_for_update().select_related("owner").get(pk=agent.pk)
    change = (
        AgentChange.objects.select_for_update()
        .filter(agent=agent, state=AgentChange.State.PENDING)
        .select_related("requested_by")
        .first()
    )
    if change is None:
        raise NoPendingChange(f"agent {agent.slug} has no change waiting for approval")
    return agent, change


def approve_pending_change(
    *,
    agent: Agent,
    actor: ActorLike,
    comment: str = "",
    break_glass: bool = False,
    request: RequestLike | None = None,
) -> Agent:
    """Put the pending ceiling and longest envelope in force. Only ever widens: while a change is
    pending nothing else widens, and a narrowing meanwhile narrows what is in force, not the change."""
    with transaction.atomic():
        agent, change = _locked_pending(agent)
        refusal = approval_refusal(change=change, actor=actor, break_glass=break_glass)
        if refusal:
            raise PermissionDenied(refusal)
        before = {"ceiling": list(agent.ceiling), "max_envelope_seconds": agent.max_envelope_seconds}
        agent.ceiling = sorted(set(change.ceiling))
        agent.max_envelope_seconds = change.max_envelope_seconds
        agent.save(update_fields=["ceiling", "max_envelope_seconds"])
        _decide(change, AgentChange.State.APPROVED, actor=actor, comment=comment, break_glass=break_glass)
        audit.record(
            "agent.change_approved",
            actor=actor,
            target=agent,
            before=before,
            after={
                "change": str(change.id),
                "ceiling": list(agent.ceiling),
                "max_envelope_seconds": agent.max_envelope_seconds,
                "requested_by": change.requested_by.get_username(),
                "break_glass": break_glass,
            },
            reason=comment,
            request=request,
        )
    return agent


def deny_pending_change(
    *, agent: Agent, actor: ActorLike, comment: str = "", request: RequestLike | None = None
) -> Agent:
    with transaction.atomic():
        agent, change = _locked_pending(agent)
        refusal = approval_refusal(change=change, actor=actor)
        if refusal:
            raise PermissionDenied(refusal)
        _decide(change, AgentChange.State.DENIED, actor=actor, comment=comment)
        audit.record(
            "agent.change_denied",
            actor=actor,
            target=agent,
            before={
                "change": str(change.id),
                "ceiling": change.ceiling,
                "max_envelope_seconds": change.max_envelope_seconds,
            },
            after={"ceiling": list(agent.ceiling), "max_envelope_seconds": agent.max_envelope_seconds},
            reason=comment,
            request=request,
        )
    return agent


def _decide(change: AgentChange, state: str, *, actor: ActorLike, comment: str, break_glass: bool = False) -> None:
    change.state = state
    change.decided_by = actor if getattr(actor, "pk", None) is not None else None  # type: ignore[assignment]
    change.decided_at = timezone.now()
    change.comment = (comment or "")[:1000]
    change.break_glass = break_glass
    change.save(update_fields=["state", "decided_by", "decided_at", "comment", "break_glass"])


# --- instances -----------------------------------------------------------------------------------


def _new_instance(
    *,
    agent: Agent,
    actor: ActorLike,
    public_jwk: object,
    label: str,
    origin: str,
    parent: Instance | None,
    verb: str,
    request: RequestLike | None = None,
    attested_issuer: str = "",
    attested_subject: str = "",
) -> Instance:
    _require_manager(actor, agent)
    key = validate_public_jwk(public_jwk) if public_jwk is not None else None
    if key is None and not attested_issuer:
        raise ValidationFailed("an instance needs its own public key", field="public_jwk")
    if not isinstance(label, str) or len(label) > 200:
        raise ValidationFailed("at most 200 characters", field="label")
    try:
        with transaction.atomic():
            agent = Agent.objects.select_for_update().get(pk=agent.pk)
            if agent.status != Agent.Status.ACTIVE:
                raise ValidationFailed(
                    f"agent {agent.slug} is {agent.status}; new instances need an active agent", field="agent"
                )
            instance = Instance(
                agent=agent,
                public_jwk=key,
                key_thumbprint=thumbprint(key) if key else "",
                label=label,
                origin=origin,
                parent=parent,
                created_by=cast("User", actor) if getattr(actor, "pk", None) else None,
                attested_issuer=attested_issuer,
                attested_subject=attested_subject,
            )
            instance.save(force_insert=True)
            after = {
                "spiffe_id": instance.spiffe_id,
                "origin": origin,
                "key_thumbprint": instance.key_thumbprint,
                "parent": str(parent.id) if parent else None,
                "label": label,
            }
            audit.record(verb, actor=actor, target=instance, after=after, request=request)
    except IntegrityError:
        raise ValidationFailed(
            "this key already belongs to another instance; every instance needs its own key", field="public_jwk"
        ) from None
    return instance


def register_instance(
    *,
    agent: Agent,
    actor: ActorLike,
    public_jwk: object,
    label: str = "",
    request: RequestLike | None = None,
    **attestation: str,
) -> Instance:
    return _new_instance(
        agent=agent,
        actor=actor,
        public_jwk=public_jwk,
        label=label,
        origin=Instance.Origin.REGISTERED,
        parent=None,
        verb="instance.registered",
        request=request,
        **attestation,
    )


def clone_instance(
    *, parent: Instance, actor: ActorLike, public_jwk: object, label: str = "", request: RequestLike | None = None
) -> Instance:
    """A clone is a new identity with its own key; it inherits no envelope and no credential."""
    if parent.status == Instance.Status.RETIRED:
        raise ValidationFailed("a retired instance cannot be cloned", field="instance")
    return _new_instance(
        agent=parent.agent,
        actor=actor,
        public_jwk=public_jwk,
        label=label,
        origin=Instance.Origin.CLONE,
        parent=parent,
        verb="instance.cloned",
        request=request,
    )


def spawn_subagent(
    *, parent: Instance, actor: ActorLike, public_jwk: object, label: str = "", request: RequestLike | None = None
) -> Instance:
    if parent.status != Instance.Status.ACTIVE:
        raise ValidationFailed("only an active instance may spawn a sub-agent", field="instance")
    return _new_instance(
        agent=parent.agent,
        actor=actor,
        public_jwk=public_jwk,
        label=label,
        origin=Instance.Origin.SUBAGENT,
        parent=parent,
        verb="instance.spawned",
        request=request,
    )


# --- credential revocation cascade ---------------------------------------------------------------
