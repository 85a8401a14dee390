"""Writes for agents, instances and credentials. Each use case is one function, used by the API,
the console, Celery tasks and management commands alike.

Every transition locks its row, returns early when already there, refuses a wrong from-state with
``InvalidTransition``, writes its audit event and performs its cascade in one transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from django.conf import settings
from django.db import IntegrityError, transaction

from accounts.roles import AGENT_OWNER, has_role, is_admin
from audit import services as audit
from audit.services import ActorLike, RequestLike
from core.errors import PermissionDenied, ValidationFailed
from identities.jwk import thumbprint, validate_public_jwk
from identities.models import Agent, Instance
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
    _require_manager(actor)
    if owner is not None and owner != actor and not is_admin(actor):
        raise PermissionDenied("only identity admins may register an agent for another owner")
    if not isinstance(slug, str) or not SLUG_RE.fullmatch(slug):
        raise ValidationFailed("lower-case letters, digits and hyphens, at most 63", field="slug")
    agent = Agent(
        slug=slug,
        name=name,
        description=description or "",
        owner=owner or cast("User", actor),  # _require_manager admitted a person
        ceiling=clean_ceiling(ceiling),
        max_envelope_seconds=clean_max_envelope_seconds(max_envelope_seconds),
    )
    try:
        with transaction.atomic():
            agent.save(force_insert=True)
            audit.record("agent.created", actor=actor, target=agent, after=agent.snapshot(), request=request)
    except IntegrityError:
        raise ValidationFailed("an agent with this slug exists already", field="slug") from None
    return agent


def update_agent(*, agent: Agent, actor: ActorLike, changes: dict, request: RequestLike | None = None) -> Agent:
    _require_manager(actor, agent)
    with transaction.atomic():
        agent = Agent.objects.select_for_update().select_related("owner").get(pk=agent.pk)
        before = agent.snapshot()
        fields = []
        for field, value in changes.items():
            if field == "ceiling":
                value = clean_ceiling(value)
            elif field == "max_envelope_seconds":
                value = clean_max_envelope_seconds(value)
            elif field not in ("name", "description"):
                continue
            if getattr(agent, field) != value:
                setattr(agent, field, value)
                fields.append(field)
        if fields:
            agent.save(update_fields=fields)
            audit.record(
                "agent.updated", actor=actor, target=agent, before=before, after=agent.snapshot(), request=request
            )
    return agent


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
