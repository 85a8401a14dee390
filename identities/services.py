"""Writes for agents, instances and credentials. Each use case is one function, used by the API,
the console, Celery tasks and management commands alike.

Every transition locks its row, returns early when already there, refuses a wrong from-state with
``InvalidTransition``, writes its audit event and performs its cascade in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from console import audit
from console.errors import InvalidTransition, PermissionDenied, ValidationFailed
from console.roles import AGENT_OWNER, has_role, is_admin
from identities.jwk import thumbprint, validate_public_jwk
from identities.models import Agent, Credential, Instance
from identities.validators import SLUG_RE, is_scope

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


def _require_manager(actor, agent: Agent | None = None) -> None:
    """People manage agents as identity admins, or as agent owners of their own agents; auditors and
    gateways change nothing. Non-person actors (policy rules, the scheduler, an instance) reach these
    functions only through cascades and sweeps the code decided on, so they pass."""
    if actor is None or isinstance(actor, audit.Actor) or is_admin(actor):
        return
    if has_role(actor, AGENT_OWNER) and (agent is None or agent.owner_id == actor.pk):
        return
    raise PermissionDenied("only the agent's owner or an identity admin may do this")


# --- agents --------------------------------------------------------------------------------------


def register_agent(
    *,
    actor,
    slug: str,
    name: str,
    description: str = "",
    ceiling: list[str],
    max_envelope_seconds: int,
    owner=None,
    request=None,
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
        owner=owner or actor,
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


def update_agent(*, agent: Agent, actor, changes: dict, request=None) -> Agent:
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


def pause_agent(*, agent: Agent, actor, reason: str = "", request=None) -> Agent:
    """Pause the agent and every active instance of it; their live credentials are revoked."""
    _require_manager(actor, agent)
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        if agent.status == Agent.Status.PAUSED:
            return agent
        old = agent.set_status(Agent.Status.PAUSED, allowed_from=(Agent.Status.ACTIVE,))
        audit.record(
            "agent.paused",
            actor=actor,
            target=agent,
            before={"status": old},
            after={"status": agent.status},
            reason=reason,
            request=request,
        )
        for instance in _lock_instances(agent, Instance.Status.ACTIVE):
            _pause_instance_locked(
                instance, actor=actor, reason=reason or "agent paused", with_agent=True, request=request
            )
    return agent


def resume_agent(*, agent: Agent, actor, reason: str = "", request=None) -> Agent:
    """Resume the agent, and the instances that were paused only because it was."""
    _require_manager(actor, agent)
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        if agent.status == Agent.Status.ACTIVE:
            return agent
        old = agent.set_status(Agent.Status.ACTIVE, allowed_from=(Agent.Status.PAUSED,))
        audit.record(
            "agent.resumed",
            actor=actor,
            target=agent,
            before={"status": old},
            after={"status": agent.status},
            reason=reason,
            request=request,
        )
        for instance in _lock_instances(agent, Instance.Status.PAUSED):
            if instance.paused_with_agent:
                instance.agent = agent
                _resume_instance_locked(instance, actor=actor, reason=reason or "agent resumed", request=request)
    return agent


def retire_agent(*, agent: Agent, actor, reason: str = "", request=None) -> Agent:
    """Retire the agent for good: every instance retires, its envelopes end, its credentials die."""
    _require_manager(actor, agent)
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        if agent.status == Agent.Status.RETIRED:
            return agent
        old = agent.set_status(Agent.Status.RETIRED, allowed_from=Agent.LIVE_STATES)
        audit.record(
            "agent.retired",
            actor=actor,
            target=agent,
            before={"status": old},
            after={"status": agent.status},
            reason=reason,
            request=request,
        )
        for instance in _lock_instances(agent, *Instance.LIVE_STATES):
            _retire_instance_locked(instance, actor=actor, reason=reason or "agent retired", request=request)
    return agent


def _lock_instances(agent: Agent, *statuses: str) -> list[Instance]:
    instances = list(Instance.objects.select_for_update().filter(agent=agent, status__in=statuses).order_by("id"))
    for instance in instances:
        instance.agent = agent
    return instances


# --- instances -----------------------------------------------------------------------------------


def _new_instance(
    *,
    agent: Agent,
    actor,
    public_jwk,
    label: str,
    origin: str,
    parent: Instance | None,
    verb: str,
    request=None,
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
                created_by=actor if getattr(actor, "pk", None) else None,
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


def register_instance(*, agent: Agent, actor, public_jwk, label: str = "", request=None, **attestation) -> Instance:
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


def clone_instance(*, parent: Instance, actor, public_jwk, label: str = "", request=None) -> Instance:
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


def spawn_subagent(*, parent: Instance, actor, public_jwk, label: str = "", request=None) -> Instance:
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


def pause_instance(*, instance: Instance, actor, reason: str = "", request=None) -> Instance:
    _require_manager(actor, instance.agent)
    with transaction.atomic():
        instance = Instance.objects.select_for_update().select_related("agent").get(pk=instance.pk)
        if instance.status == Instance.Status.PAUSED:
            return instance
        _pause_instance_locked(instance, actor=actor, reason=reason, request=request)
    return instance


def resume_instance(*, instance: Instance, actor, reason: str = "", request=None) -> Instance:
    _require_manager(actor, instance.agent)
    with transaction.atomic():
        instance = Instance.objects.select_for_update().select_related("agent").get(pk=instance.pk)
        if instance.status == Instance.Status.ACTIVE:
            return instance
        if instance.agent.status != Agent.Status.ACTIVE:
            raise InvalidTransition(f"agent {instance.agent.slug} is {instance.agent.status}; resume the agent first")
        _resume_instance_locked(instance, actor=actor, reason=reason, request=request)
    return instance


def retire_instance(*, instance: Instance, actor, reason: str = "", request=None) -> Instance:
    _require_manager(actor, instance.agent)
    with transaction.atomic():
        instance = Instance.objects.select_for_update().select_related("agent").get(pk=instance.pk)
        if instance.status == Instance.Status.RETIRED:
            return instance
        _retire_instance_locked(instance, actor=actor, reason=reason, request=request)
    return instance


def _pause_instance_locked(instance: Instance, *, actor, reason: str, request=None, with_agent: bool = False) -> None:
    old = instance.set_status(Instance.Status.PAUSED, allowed_from=(Instance.Status.ACTIVE,), with_agent=with_agent)
    audit.record(
        "instance.paused",
        actor=actor,
        target=instance,
        before={"status": old},
        after={"status": instance.status},
        reason=reason,
        request=request,
    )
    revoke_credentials(
        instance=instance,
        actor=actor,
        reason=f"instance paused: {reason}" if reason else "instance paused",
        request=request,
    )


def _resume_instance_locked(instance: Instance, *, actor, reason: str, request=None) -> None:
    old = instance.set_status(Instance.Status.ACTIVE, allowed_from=(Instance.Status.PAUSED,))
    audit.record(
        "instance.resumed",
        actor=actor,
        target=instance,
        before={"status": old},
        after={"status": instance.status},
        reason=reason,
        request=request,
    )


def _retire_instance_locked(instance: Instance, *, actor, reason: str, request=None) -> None:
    old = instance.set_status(Instance.Status.RETIRED, allowed_from=Instance.LIVE_STATES)
    audit.record(
        "instance.retired",
        actor=actor,
        target=instance,
        before={"status": old},
        after={"status": instance.status},
        reason=reason,
        request=request,
    )
    # Its open envelopes end with it; ending a live envelope revokes the credentials under it.
    from tasks.services import close_envelopes_of_retired_instance

    close_envelopes_of_retired_instance(instance=instance, actor=actor, request=request)
    revoke_credentials(instance=instance, actor=actor, reason="instance retired", request=request)


# --- credential revocation cascade ---------------------------------------------------------------


def revoke_credentials(
    *,
    actor,
    reason: str,
    instance: Instance | None = None,
    envelope=None,
    jtis: Iterable[str] | None = None,
    request=None,
) -> int:
    """Revoke every live credential under an instance, an envelope or the given jtis, and every
    credential delegated from those, in the caller's transaction. Returns how many were revoked.

    The update is conditional on ``status='active'`` so a concurrent sweep or revoke never double
    counts, and each revoked credential gets its own audit event.
    """
    if instance is None and envelope is None and jtis is None:
        raise ValueError("say which credentials to revoke")
    now = timezone.now()
    base = Credential.objects.filter(status=Credential.Status.ACTIVE)
    if instance is not None:
        base = base.filter(instance=instance)
    if envelope is not None:
        base = base.filter(envelope=envelope)
    if jtis is not None:
        base = base.filter(jti__in=list(jtis))
    frontier = list(base.values_list("jti", flat=True))
    revoked: list[str] = []
    while frontier:
        claimed = list(
            Credential.objects.select_for_update()
            .filter(jti__in=frontier, status=Credential.Status.ACTIVE)
            .values_list("jti", flat=True)
        )
        if claimed:
            Credential.objects.filter(jti__in=claimed, status=Credential.Status.ACTIVE).update(
                status=Credential.Status.REVOKED, revoked_at=now, revoke_reason=reason[:500]
            )
            revoked.extend(claimed)
        # Delegated credentials die with their parent, whatever instance holds them.
        frontier = list(
            Credential.objects.filter(parent_id__in=frontier, status=Credential.Status.ACTIVE).values_list(
                "jti", flat=True
            )
        )
    if revoked:
        rows = Credential.objects.filter(jti__in=revoked).select_related("instance")
        for credential in rows:
            audit.record(
                "credential.revoked",
                actor=actor,
                target=credential,
                before={"status": "active"},
                after={"status": "revoked"},
                reason=reason,
                request=request,
                agent_id=credential.instance.agent_id,
            )
    return len(revoked)


def revoke_credential(
    *, credential: Credential, actor, reason: str = "", request=None, proof_of_possession: bool = False
) -> Credential:
    """Revoke one credential and every credential delegated from it.

    Allowed to the agent's owner and identity admins, or to whoever presents the token itself
    (``proof_of_possession``: the caller verified its signature, as ``/oauth/revoke`` does).
    Revoking a revoked credential is a no-op; an expired one cannot be revoked (409).
    """
    if not proof_of_possession:
        agent = credential.instance.agent
        if not (is_admin(actor) or (getattr(actor, "pk", None) == agent.owner_id and has_role(actor, AGENT_OWNER))):
            raise PermissionDenied("only the agent's owner or an identity admin may revoke its credentials")
    if reason is not None and not isinstance(reason, str):
        raise ValidationFailed("a short text", field="reason")
    with transaction.atomic():
        locked = Credential.objects.select_for_update().get(pk=credential.pk)
        if locked.status == Credential.Status.REVOKED:
            return locked
        if locked.status == Credential.Status.EXPIRED or locked.expires_at <= timezone.now():
            raise InvalidTransition("the credential has expired; there is nothing left to revoke")
        revoke_credentials(
            jtis=[locked.jti], actor=actor, reason=(reason or "revoked").strip()[:500] or "revoked", request=request
        )
    locked.refresh_from_db()
    return locked
