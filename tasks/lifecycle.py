"""The lifecycle verbs that cascade, in one place: pausing, resuming and retiring agents and
instances, ending, revoking and re-tasking envelopes, revoking credentials. The API, the console,
the Celery jobs and the management commands all call these functions, never their own copies.

Each verb takes a typed ``actor``, locks its row first, returns early when already there, refuses
a wrong from-state with ``InvalidTransition``, and writes its audit rows and performs its cascade
(pausing an agent pauses its instances, which revokes what they hold) in one transaction.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from audit import services as audit
from audit.services import ActorLike, RequestLike
from core.errors import ChangePending, InvalidTransition, ValidationFailed
from identities.models import PAUSE_FIELDS, Agent, Credential, Instance, PauseMark, pause_of, set_pause_mark
from identities.permissions import pause_mark, require_can_manage, require_can_resume
from identities.services import (
    _require_manager,
    apply_agent_fields,
    clean_ceiling,
    clean_max_envelope_seconds,
    is_widening,
    needs_approval,
    open_change,
    pending_change_of,
)
from tasks.models import TaskEnvelope
from tasks.services import (
    _after_commit_notify,
    _is_rule_actor,
    _lock,
    _require_owner_or_admin,
    deny_pending,
    pending_deadline,
    request_envelope,
)

State = TaskEnvelope.State
logger = logging.getLogger(__name__)


# --- agents and instances ------------------------------------------------------------------------


def pause_agent(*, agent: Agent, actor: ActorLike, reason: str = "", request: RequestLike | None = None) -> Agent:
    """Pause the agent and every active instance of it; their live credentials are revoked.

    A pause by an identity admin or a policy rule is a lock only an identity admin lifts; such a
    pause of an agent its owner paused turns the owner's pause into a lock (``agent.locked``)."""
    _require_manager(actor, agent)
    mark = pause_mark(actor, reason)
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        if agent.status == Agent.Status.PAUSED:
            if mark.locked and not agent.pause_locked:
                _lock_paused(agent, mark, actor=actor, request=request)
                for instance in _lock_instances(agent, Instance.Status.PAUSED):
                    if instance.paused_with_agent:
                        _lock_paused(instance, mark, actor=actor, request=request)
            return agent
        old = agent.set_status(Agent.Status.PAUSED, allowed_from=(Agent.Status.ACTIVE,), pause=mark)
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
                instance,
                actor=actor,
                reason=reason or "agent paused",
                with_agent=True,
                request=request,
                mark=PauseMark(mark.by, reason or "agent paused", mark.locked),
            )
    return agent


def _lock_paused(row: Agent | Instance, mark: PauseMark, *, actor: ActorLike, request: RequestLike | None) -> None:
    """Turn an owner's pause into a lock held by ``mark``'s admin or rule."""
    before = pause_of(row)
    set_pause_mark(row, mark)
    row.save(update_fields=list(PAUSE_FIELDS))
    audit.record(
        f"{row.audit_type}.locked",
        actor=actor,
        target=row,
        before={"pause": before},
        after={"pause": pause_of(row)},
        reason=mark.reason,
        request=request,
    )


def resume_agent(*, agent: Agent, actor: ActorLike, reason: str = "", request: RequestLike | None = None) -> Agent:
    """Resume the agent, and the instances that were paused only because it was. A locked pause
    (by an identity admin or a policy rule) is lifted by identity admins only."""
    _require_manager(actor, agent)
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        if agent.status == Agent.Status.ACTIVE:
            return agent
        if agent.status == Agent.Status.PAUSED:
            require_can_resume(actor, agent, f"agent {agent.slug}")
        before = {"status": agent.status, "pause": pause_of(agent)}
        agent.set_status(Agent.Status.ACTIVE, allowed_from=(Agent.Status.PAUSED,))
        audit.record(
            "agent.resumed",
            actor=actor,
            target=agent,
            before=before,
            after={"status": agent.status},
            reason=reason,
            request=request,
        )
        for instance in _lock_instances(agent, Instance.Status.PAUSED):
            if instance.paused_with_agent:
                instance.agent = agent
                _resume_instance_locked(instance, actor=actor, reason=reason or "agent resumed", request=request)
    return agent


def retire_agent(*, agent: Agent, actor: ActorLike, reason: str = "", request: RequestLike | None = None) -> Agent:
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


def update_agent(
    *, agent: Agent, actor: ActorLike, changes: dict, request: RequestLike | None = None
) -> tuple[Agent, bool]:
    """Change an agent's name, description, ceiling or longest envelope; returns the agent and
    whether a widening now waits for approval.

    Name and description apply at once. What a change removes (scopes, seconds) applies at once:
    live envelopes holding a removed scope are revoked (their credentials die) and pending ones that
    ask for one are denied, each audited as a re-task is. What it adds waits as the agent's pending
    change for an identity admin other than the requester; a second one is refused (409)."""
    _require_manager(actor, agent)
    with transaction.atomic():
        agent = Agent.objects.select_for_update().select_related("owner").get(pk=agent.pk)
        ceiling = clean_ceiling(changes["ceiling"]) if "ceiling" in changes else list(agent.ceiling)
        longest = (
            clean_max_envelope_seconds(changes["max_envelope_seconds"])
            if "max_envelope_seconds" in changes
            else agent.max_envelope_seconds
        )
        widening = is_widening(agent, ceiling, longest)
        pending = widening and needs_approval(actor)
        if pending and pending_change_of(agent) is not None:
            raise ChangePending(
                f"agent {agent.slug} already has a change waiting for approval; an identity admin decides it first"
            )
        fields = {k: v for k, v in changes.items() if k in ("name", "description")}
        removed = sorted(set(agent.ceiling) - set(ceiling))
        if pending:  # in force now: only what narrows
            fields["ceiling"] = sorted(set(agent.ceiling) & set(ceiling))
            fields["max_envelope_seconds"] = min(agent.max_envelope_seconds, longest)
            wanted = (ceiling, longest)
        else:
            fields["ceiling"] = ceiling
            fields["max_envelope_seconds"] = longest
        apply_agent_fields(agent=agent, actor=actor, fields=fields, request=request)
        if removed:
            _close_envelopes_holding(agent, removed, actor=actor, request=request)
        if pending:
            open_change(agent=agent, actor=actor, ceiling=wanted[0], max_envelope_seconds=wanted[1], request=request)
    return agent, pending


def _close_envelopes_holding(
    agent: Agent, removed: list[str], *, actor: ActorLike, request: RequestLike | None = None
) -> None:
    """The agent's ceiling lost ``removed``: envelopes that hold or ask for one of them end."""
    reason = f"agent ceiling narrowed: {', '.join(removed)} no longer allowed"
    gone = set(removed)
    for envelope in (
        TaskEnvelope.objects.select_for_update()
        .select_related("agent", "instance")
        .filter(agent=agent, state__in=TaskEnvelope.OPEN_STATES)
        .order_by("id")
    ):
        if not gone & set(envelope.scopes):
            continue
        if envelope.state == State.PENDING:
            deny_pending(envelope, actor=actor, reason=reason, request=request)
        else:
            _end_live(
                envelope, new_state=State.REVOKED, verb="envelope.revoked", actor=actor, reason=reason, request=request
            )


def _lock_instances(agent: Agent, *statuses: str) -> list[Instance]:
    instances = list(Instance.objects.select_for_update().filter(agent=agent, status__in=statuses).order_by("id"))
    for instance in instances:
        instance.agent = agent
    return instances


def pause_instance(
    *, instance: Instance, actor: ActorLike, reason: str = "", request: RequestLike | None = None
) -> Instance:
    _require_manager(actor, instance.agent)
    mark = pause_mark(actor, reason)
    with transaction.atomic():
        instance = Instance.objects.select_for_update().select_related("agent").get(pk=instance.pk)
        if instance.status == Instance.Status.PAUSED:
            if mark.locked and not instance.pause_locked:
                _lock_paused(instance, mark, actor=actor, request=request)
            return instance
        _pause_instance_locked(instance, actor=actor, reason=reason, request=request, mark=mark)
    return instance


def resume_instance(
    *, instance: Instance, actor: ActorLike, reason: str = "", request: RequestLike | None = None
) -> Instance:
    _require_manager(actor, instance.agent)
    with transaction.atomic():
        instance = Instance.objects.select_for_update().select_related("agent").get(pk=instance.pk)
        if instance.status == Instance.Status.ACTIVE:
            return instance
        if instance.status == Instance.Status.PAUSED:
            require_can_resume(actor, instance, f"instance {instance.id}")
        if instance.agent.status != Agent.Status.ACTIVE:
            raise InvalidTransition(f"agent {instance.agent.slug} is {instance.agent.status}; resume the agent first")
        _resume_instance_locked(instance, actor=actor, reason=reason, request=request)
    return instance


def retire_instance(
    *, instance: Instance, actor: ActorLike, reason: str = "", request: RequestLike | None = None
) -> Instance:
    _require_manager(actor, instance.agent)
    with transaction.atomic():
        instance = Instance.objects.select_for_update().select_related("agent").get(pk=instance.pk)
        if instance.status == Instance.Status.RETIRED:
            return instance
        _retire_instance_locked(instance, actor=actor, reason=reason, request=request)
    return instance


def _pause_instance_locked(
    instance: Instance,
    *,
    actor: ActorLike,
    reason: str,
    mark: PauseMark,
    request: RequestLike | None = None,
    with_agent: bool = False,
) -> None:
    old = instance.set_status(
        Instance.Status.PAUSED, allowed_from=(Instance.Status.ACTIVE,), with_agent=with_agent, pause=mark
    )
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


def _resume_instance_locked(
    instance: Instance, *, actor: ActorLike, reason: str, request: RequestLike | None = None
) -> None:
    before = {"status": instance.status, "pause": pause_of(instance)}
    instance.set_status(Instance.Status.ACTIVE, allowed_from=(Instance.Status.PAUSED,))
    audit.record(
        "instance.resumed",
        actor=actor,
        target=instance,
        before=before,
        after={"status": instance.status},
        reason=reason,
        request=request,
    )


def _retire_instance_locked(
    instance: Instance, *, actor: ActorLike, reason: str, request: RequestLike | None = None
) -> None:
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
    close_envelopes_of_retired_instance(instance=instance, actor=actor, request=request)
    revoke_credentials(instance=instance, actor=actor, reason="instance retired", request=request)


def revoke_credentials(
    *,
    actor: ActorLike,
    reason: str,
    instance: Instance | None = None,
    envelope: TaskEnvelope | None = None,
    jtis: Iterable[str] | None = None,
    request: RequestLike | None = None,
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
    *,
    credential: Credential,
    actor: ActorLike,
    reason: str = "",
    request: RequestLike | None = None,
    proof_of_possession: bool = False,
) -> Credential:
    """Revoke one credential and every credential delegated from it.

    Allowed to the agent's owner and identity admins, or to whoever presents the token itself
    (``proof_of_possession``: the caller verified its signature, as ``/oauth/revoke`` does).
    Revoking a revoked credential is a no-op; an expired one cannot be revoked (409).
    """
    if not proof_of_possession:
        require_can_manage(actor, credential.instance.agent, "revoke its credentials")
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


# --- envelopes -----------------------------------------------------------------------------------


def _end_live(
    envelope: TaskEnvelope,
    *,
    new_state: str,
    verb: str,
    actor: ActorLike,
    reason: str,
    request: RequestLike | None = None,
) -> None:
    """Leave approved/active for an end state and revoke every credential under the envelope."""
    envelope.end_reason = (reason or new_state)[:500]
    old = envelope.set_state(new_state, allowed_from=TaskEnvelope.LIVE_STATES, extra_fields=("end_reason",))
    audit.record(
        verb,
        actor=actor,
        target=envelope,
        before={"state": old},
        after={"state": envelope.state},
        reason=reason,
        request=request,
    )
    revoke_credentials(envelope=envelope, actor=actor, reason=f"envelope {new_state}", request=request)


def revoke_envelope(
    *, envelope: TaskEnvelope, actor: ActorLike, reason: str = "", request: RequestLike | None = None
) -> TaskEnvelope:
    # A named policy rule (e.g. the drift limit) or the scheduler acts on its own authority.
    if not _is_rule_actor(actor):
        _require_owner_or_admin(actor, envelope.agent, "revoke this envelope")
    with transaction.atomic():
        envelope = _lock(envelope)
        if envelope.state == State.REVOKED:
            return envelope
        _end_live(
            envelope, new_state=State.REVOKED, verb="envelope.revoked", actor=actor, reason=reason, request=request
        )
    return envelope


def complete_envelope(*, envelope: TaskEnvelope, actor: ActorLike, request: RequestLike | None = None) -> TaskEnvelope:
    """Complete by the agent's owner, an admin, or the envelope's own instance (``audit.Actor``)."""
    is_own_instance = (
        isinstance(actor, audit.Actor)
        and actor.type == audit.AuditEvent.ActorType.INSTANCE
        and actor.name == envelope.instance.spiffe_id
    )
    if not is_own_instance:
        _require_owner_or_admin(actor, envelope.agent, "complete this envelope")
    with transaction.atomic():
        envelope = _lock(envelope)
        if envelope.state == State.COMPLETED:
            return envelope
        _end_live(
            envelope,
            new_state=State.COMPLETED,
            verb="envelope.completed",
            actor=actor,
            reason="task completed",
            request=request,
        )
    return envelope


def retask_envelope(
    *, envelope: TaskEnvelope, actor: ActorLike, request: RequestLike | None = None, **fields: object
) -> TaskEnvelope:
    """Never widen in place: a new pending envelope supersedes this one, whose credentials die now."""
    _require_owner_or_admin(actor, envelope.agent, "re-task this envelope")
    with transaction.atomic():
        envelope = _lock(envelope)
        if envelope.state not in TaskEnvelope.LIVE_STATES:
            raise InvalidTransition(f"envelope is {envelope.state}; only approved or active envelopes can be re-tasked")
        if fields.get("audiences") is None:
            fields["audiences"] = list(envelope.audiences)  # a re-task keeps its audiences unless it names others
        new = request_envelope(
            actor=actor,
            instance=envelope.instance,
            supersedes=envelope,
            allow_auto_approve=False,
            request=request,
            **fields,
        )
        _end_live(
            envelope,
            new_state=State.SUPERSEDED,
            verb="envelope.superseded",
            actor=actor,
            reason=f"re-tasked as {new.id}",
            request=request,
        )
    return new


def expire_envelope(*, envelope_id: uuid.UUID, actor: ActorLike = None, now: datetime | None = None) -> bool:
    """Expire one envelope: a live one past ``expires_at``, or a pending one nobody decided in time.
    Returns True when this call changed it (safe to call twice, or from two workers at once)."""
    actor = actor or audit.Actor.scheduler("expire-envelopes")
    now = now or timezone.now()
    with transaction.atomic():
        envelope = (
            TaskEnvelope.objects.select_for_update().select_related("agent", "instance").filter(pk=envelope_id).first()
        )
        if envelope is None:
            return False
        if envelope.state in TaskEnvelope.LIVE_STATES and envelope.expires_at and envelope.expires_at <= now:
            _end_live(
                envelope, new_state=State.EXPIRED, verb="envelope.expired", actor=actor, reason="expired", request=None
            )
            return True
        if envelope.state == State.PENDING and envelope.created_at <= pending_deadline(now):
            envelope.end_reason = "nobody decided in time"
            old = envelope.set_state(State.EXPIRED, allowed_from=(State.PENDING,), extra_fields=("end_reason",))
            audit.record(
                "envelope.expired",
                actor=actor,
                target=envelope,
                before={"state": old},
                after={"state": envelope.state},
                reason=envelope.end_reason,
            )
            _after_commit_notify("decided", envelope.id)
            return True
    return False


def expire_pending_requests(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Expire pending requests older than the policy's limit, oldest first, at most ``limit`` per
    call; returns how many this call expired. Each row is expired in its own transaction by
    ``expire_envelope`` (which re-checks under the row lock), so two sweeps at once never expire
    one twice, and one failing row is logged and skipped rather than stopping the sweep."""
    now = now or timezone.now()
    cutoff = pending_deadline(now)
    # Uses env_pending_idx (partial index on created_at where state = 'pending').
    ids = list(
        TaskEnvelope.objects.filter(state=State.PENDING, created_at__lte=cutoff)
        .order_by("created_at")
        .values_list("id", flat=True)[:limit]
    )
    expired = 0
    for envelope_id in ids:
        try:
            expired += expire_envelope(
                envelope_id=envelope_id, actor=audit.Actor.scheduler("expire-pending-requests"), now=now
            )
        except Exception:
            logger.exception("could not expire pending envelope %s", envelope_id)
    return expired


def activate_on_first_credential(*, envelope: TaskEnvelope, actor: ActorLike) -> bool:
    """approved → active when the first credential is minted (conditional update: only one wins)."""
    changed = TaskEnvelope.objects.filter(pk=envelope.pk, state=State.APPROVED).update(state=State.ACTIVE)
    if changed:
        envelope.state = State.ACTIVE
        audit.record(
            "envelope.activated", actor=actor, target=envelope, before={"state": "approved"}, after={"state": "active"}
        )
    return bool(changed)


def close_envelopes_of_retired_instance(
    *, instance: Instance, actor: ActorLike, request: RequestLike | None = None
) -> None:
    """A retired instance keeps no authority: live envelopes are revoked, pending ones denied."""
    for envelope in (
        TaskEnvelope.objects.select_for_update()
        .select_related("agent", "instance")
        .filter(instance=instance, state__in=TaskEnvelope.OPEN_STATES)
        .order_by("id")
    ):
        if envelope.state == State.PENDING:
            deny_pending(envelope, actor=actor, reason="instance retired", request=request, notify=False)
        else:
            _end_live(
                envelope,
                new_state=State.REVOKED,
                verb="envelope.revoked",
                actor=actor,
                reason="instance retired",
                request=request,
            )
