"""Issuing credentials: ``client_credentials`` inside an envelope, and delegation by token exchange.

The token endpoint (``identities/oauth.py``) parses the request and calls these; every refusal is a
``GrantRefused`` carrying its RFC 6749 error code.

Concurrency: minting takes no lock that serialises instances. The rows a credential depends on (its
envelope, the instance and its agent, and for delegation the parent credential) are read under
``FOR KEY SHARE`` on PostgreSQL: mints never wait for each other, but a transition that ends the
envelope, pauses the instance or revokes the parent (all ``SELECT … FOR UPDATE``) waits for a mint in
flight and then revokes what it minted, or makes the mint wait and refuse. SQLite serialises write
transactions (``BEGIN IMMEDIATE``), which gives the same guarantee there.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from audit import services as audit
from audit.services import ActorLike, RequestLike
from core.oauth_errors import (
    INVALID_CLIENT,
    INVALID_GRANT,
    INVALID_REQUEST,
    INVALID_SCOPE,
    INVALID_TARGET,
    GrantRefused,
    TokenRejected,
)
from core.sql import PreparedValues, key_shared, model_from, statement_cursor, transaction_lock
from identities.assertions import VerifiedAssertion, consume_assertion
from identities.credential_jwt import MintedToken, credential_ttl, mint_credential, verify_access_token
from identities.keys import active_signing_key
from identities.models import Agent, Credential, Instance
from tasks.lifecycle import activate_on_first_credential
from tasks.models import TaskEnvelope
from tasks.policy import active_policy
from tasks.seen import note_instance_seen

logger = logging.getLogger(__name__)

# last_seen_at is a hint for people and the stale-session sweep: write it at most this often.


def _refuse(error: str, description: str) -> GrantRefused:
    return GrantRefused(error, description)


# Only the columns minting reads, compiled once per process: compiling the three-table SELECT on
# every call cost more CPU than the signature. (The intent is the envelope's audit label.)
_ENVELOPE_FIELDS = (
    "id",
    "instance_id",
    "agent_id",
    "state",
    "expires_at",
    "scopes",
    "resources",
    "audiences",
    "duration_seconds",
    "max_actions",
    "may_delegate",
    "delegation_depth",
    "risk",
    "intent",
)
_INSTANCE_FIELDS = ("id", "agent_id", "status", "agent__id", "agent__slug", "agent__status", "agent__owner_id")


def _envelope_with_requester(pk: uuid.UUID) -> QuerySet[TaskEnvelope, tuple[Any, ...]]:
    return (
        TaskEnvelope.objects.filter(pk=pk)
        .order_by()
        .values_list(
            *_ENVELOPE_FIELDS,
            "instance__status",
            "instance__agent_id",
            "instance__agent__slug",
            "instance__agent__status",
            "instance__agent__owner_id",
        )
    )


_MINT_TURN = "mint:"  # + the envelope id: the advisory lock mints under one envelope take turns on
_envelope_for_minting = PreparedValues(_envelope_with_requester, sample=uuid.UUID(int=0), key_share=True)
# The same read taking the mint's turn in its round trip (PostgreSQL), for when a cap is counted.
_envelope_for_minting_in_turn = PreparedValues(
    _envelope_with_requester, sample=uuid.UUID(int=0), key_share=True, turn=_MINT_TURN
)


def _lock_envelope(envelope_id: uuid.UUID, *, take_turn: bool = False) -> TaskEnvelope | None:
    """The envelope with its instance and agent (one query), share-locked, as model instances
    loaded with just the columns above; with ``take_turn``, also the live-credential cap's turn
    (``_check_live_cap(turn_taken=True)``) in the same statement."""
    read = _envelope_for_minting_in_turn if take_turn else _envelope_for_minting
    row = read.fetch(envelope_id)
    if row is None:
        return None
    agent = model_from(
        Agent,
        {
            "id": row["instance__agent_id"],
            "slug": row["instance__agent__slug"],
            "status": row["instance__agent__status"],
            "owner_id": row["instance__agent__owner_id"],
        },
    )
    instance = model_from(
        Instance, {"id": row["instance_id"], "agent_id": row["instance__agent_id"], "status": row["instance__status"]}
    )
    envelope = model_from(TaskEnvelope, {name: row[name] for name in _ENVELOPE_FIELDS})
    instance.agent = agent
    envelope.instance = instance
    return envelope


def _lock_instance(instance_id: uuid.UUID) -> Instance | None:
    rows = key_shared(
        Instance.objects.select_related("agent").only(*_INSTANCE_FIELDS).filter(pk=instance_id).order_by()
    )
    return rows[0] if rows else None


def _lock_credential(jti: str) -> Credential | None:
    rows = key_shared(Credential.objects.filter(jti=jti).order_by())
    return rows[0] if rows else None


_policy_ttl_cache: dict[tuple[str, uuid.UUID], int] = {}


def policy_ttl_ceiling(envelope: TaskEnvelope) -> int:
    """The policy's credential lifetime ceiling for this envelope's risk. An envelope never changes
    once approved, so the answer is cached per policy version."""
    policy = active_policy()
    key = (policy.version, envelope.id)
    ceiling = _policy_ttl_cache.get(key)
    if ceiling is None:
        try:
            verdict = policy.classify(
                scopes=list(envelope.scopes),
                resources=list(envelope.resources),
                duration_seconds=envelope.duration_seconds,
                max_actions=envelope.max_actions,
                may_delegate=envelope.may_delegate,
                delegation_depth=envelope.delegation_depth,
            )
            ceiling = int(verdict.max_credential_ttl)
        except Exception:
            # A policy that cannot answer must not stop the endpoint; fall back to the shortest default.
            logger.exception("policy could not classify envelope %s; using the default credential TTL", envelope.id)
            return settings.MANDATE_CREDENTIAL_DEFAULT_TTL
        if len(_policy_ttl_cache) > 10_000:
            _policy_ttl_cache.clear()
        _policy_ttl_cache[key] = ceiling
    return ceiling


def _check_requester(instance: Instance) -> None:
    if instance.status == Instance.Status.RETIRED:
        raise _refuse(INVALID_CLIENT, "this instance is retired")
    if instance.status != Instance.Status.ACTIVE:
        raise _refuse(INVALID_GRANT, f"this instance is {instance.status}")
    if instance.agent.status != Agent.Status.ACTIVE:
        raise _refuse(INVALID_GRANT, f"agent {instance.agent.slug} is {instance.agent.status}")


def _check_envelope_live(envelope: TaskEnvelope, now: datetime) -> datetime:
    """The live envelope's end, or the refusal."""
    if envelope.state not in TaskEnvelope.LIVE_STATES:
        raise _refuse(INVALID_GRANT, f"the envelope is {envelope.state}; credentials need an approved or active one")
    if envelope.expires_at is None or envelope.expires_at <= now:
        raise _refuse(INVALID_GRANT, "the envelope has expired")
    return envelope.expires_at


def _check_live_cap(*, envelope_id: uuid.UUID, instance_id: uuid.UUID, now: datetime, turn_taken: bool = False) -> None:
    """Refuse a mint that would give ``instance_id`` more live credentials under ``envelope_id`` than
    the policy's ``[credentials] max_live``.

    Mints share-lock the envelope and otherwise never wait for each other, so two of them could both
    count one below the cap and both insert. On PostgreSQL a transaction-scoped advisory lock on the
    envelope makes mints under one envelope take turns from the lock to their commit, and the count
    is its own statement after the lock, so its snapshot sees every mint that committed before. Mints
    under other envelopes never wait. SQLite serialises write transactions, which is enough there.
    ``turn_taken``: the envelope's read already took that lock (``_lock_envelope(take_turn=True)``).
    """
    cap = active_policy().max_live_credentials
    if not cap:
        return
    if not turn_taken:
        transaction_lock(f"{_MINT_TURN}{envelope_id}")
    live = _count_live(envelope_id=envelope_id, instance_id=instance_id, now=now, up_to=cap)
    if live >= cap:
        raise _refuse(
            INVALID_GRANT,
            f"this instance already holds {live} live credentials under this envelope, the most the policy "
            f"allows (credentials.max_live = {cap}); revoke one or wait for one to expire",
        )


_LIVE_COUNT_SQL: str | None = None


def _count_live(*, envelope_id: uuid.UUID, instance_id: uuid.UUID, now: datetime, up_to: int) -> int:
    """Live credentials of ``instance_id`` under ``envelope_id``, counted up to ``up_to`` (all the cap
    needs to know), in SQL written once per process: building the ORM count on every mint cost more
    CPU than running it."""
    global _LIVE_COUNT_SQL
    meta = Credential._meta
    if _LIVE_COUNT_SQL is None:
        quote = connection.ops.quote_name

        columns = {field.name: field.column for field in meta.concrete_fields}

        def column(name: str) -> str:
            return quote(columns[name])

        _LIVE_COUNT_SQL = (
            f"SELECT count(*) FROM (SELECT 1 FROM {quote(meta.db_table)} "  # noqa: S608 - names from the model
            f"WHERE {column('envelope')} = %s AND {column('instance')} = %s AND {column('status')} = %s "
            f"AND {column('expires_at')} > %s LIMIT %s) AS live"
        )
    params = [
        meta.get_field("envelope").get_db_prep_value(envelope_id, connection),
        meta.get_field("instance").get_db_prep_value(instance_id, connection),
        Credential.Status.ACTIVE.value,
        meta.get_field("expires_at").get_db_prep_value(now, connection),
        up_to,
    ]
    with statement_cursor() as cursor:
        cursor.execute(_LIVE_COUNT_SQL, params)
        return int(cursor.fetchone()[0])


def _narrow_scopes(requested: list[str] | None, allowed: list[str], what: str) -> list[str]:
    if requested is None:
        return sorted(allowed)
    outside = sorted(set(requested) - set(allowed))
    if outside:
        raise _refuse(INVALID_SCOPE, f"outside the {what}: {' '.join(outside)[:300]}")
    return sorted(set(requested))


def _envelope_audience(envelope: TaskEnvelope, requested: str | None) -> str:
    """The audience to mint for: the one asked for if the envelope lists it (``invalid_target``
    otherwise); without one, the deployment's default if listed, else the envelope's first."""
    listed = list(envelope.audiences or ())
    if requested is None:
        default = settings.MANDATE_DEFAULT_AUDIENCE
        if default in listed or not listed:
            requested = default
        else:
            return listed[0]
    if requested not in listed:
        names = ", ".join(listed)[:300] or "none"
        raise _refuse(
            INVALID_TARGET,
            f"this envelope's credentials are not for {requested[:120]!r}; it lists: {names} "
            "(re-task the envelope to ask for another audience)",
        )
    return requested


def _consume_or_refuse(assertion: VerifiedAssertion) -> None:
    if not consume_assertion(assertion):
        raise _refuse(INVALID_CLIENT, "this client assertion was used before (jti replayed)")


def _record_issued(minted: MintedToken, *, instance: Instance, actor: ActorLike, request: RequestLike | None) -> None:
    credential = minted.credential
    audit.record(
        "credential.issued",
        actor=actor,
        target=credential,
        request=request,
        agent_id=instance.agent_id,
        after={
            "instance": str(instance.id),
            "envelope": str(credential.envelope_id),
            "scopes": list(credential.scopes),
            "audience": credential.audience,
            "expires_at": credential.expires_at,
            "kid": credential.kid,
            "parent_jti": credential.parent_id,
            "act": list(credential.act_chain) or None,
        },
    )


def _consume_after_refusal(assertion: VerifiedAssertion, refusal: GrantRefused) -> None:
    # The refused transaction rolled its insert back; record the jti anyway so a refused
    # assertion cannot be tried again with other parameters.
    if refusal.error != INVALID_CLIENT or "replayed" not in refusal.description:
        consume_assertion(assertion)


def issue_credential(
    *,
    assertion: VerifiedAssertion,
    envelope_id: uuid.UUID,
    scopes: list[str] | None,
    audience: str | None,
    ttl: int | None,
    request: RequestLike | None = None,
) -> MintedToken:
    """``client_credentials``: a credential for the asserting instance inside its own live envelope.

    TTL = min(requested, the policy ceiling for the envelope's risk, the time left in the envelope).
    The first credential moves the envelope from approved to active.
    """
    active_signing_key()  # load (or bootstrap) the signing key before the transaction opens
    now = timezone.now().replace(microsecond=0)
    try:
        with transaction.atomic():
            _consume_or_refuse(assertion)
            capped = bool(active_policy().max_live_credentials)
            envelope = _lock_envelope(envelope_id, take_turn=capped)
            # One answer for "no such envelope" and "someone else's": a clone gets nothing from its parent.
            if envelope is None or envelope.instance_id != assertion.client.instance_id:
                raise _refuse(INVALID_GRANT, "no such envelope for this instance")
            instance = envelope.instance
            _check_requester(instance)
            envelope_ends = _check_envelope_live(envelope, now)
            granted = _narrow_scopes(scopes, envelope.scopes, "envelope's scopes")
            audience = _envelope_audience(envelope, audience)
            _check_live_cap(envelope_id=envelope.id, instance_id=instance.id, now=now, turn_taken=capped)
            lifetime = credential_ttl(
                requested=ttl, policy_max=policy_ttl_ceiling(envelope), envelope_expires_at=envelope_ends, now=now
            )
            if lifetime.total_seconds() < 1:
                raise _refuse(INVALID_GRANT, "the envelope ends now")
            minted = mint_credential(
                instance=instance,
                envelope=envelope,
                scopes=granted,
                audience=audience,
                expires_at=now + lifetime,
                now=now,
            )
            actor = audit.Actor.of_instance(instance)
            if envelope.state == TaskEnvelope.State.APPROVED:
                activate_on_first_credential(envelope=envelope, actor=actor)
            _record_issued(minted, instance=instance, actor=actor, request=request)
    except GrantRefused as refusal:
        _consume_after_refusal(assertion, refusal)
        raise
    note_instance_seen(instance.id, now=now)
    return minted


def delegate_credential(
    *,
    subject_token: str,
    assertion: VerifiedAssertion,
    scopes: list[str] | None,
    audience: str | None,
    ttl: int | None,
    request: RequestLike | None = None,
) -> MintedToken:
    """RFC 8693 token exchange: the delegating instance's live credential (``subject_token``) is
    narrowed for another instance of the same agent (authenticated by ``assertion``).

    Only where the envelope may delegate and depth remains; never wider (scopes ⊆ the subject's,
    same audience) nor longer (``exp`` ≤ the subject's); the new token carries ``act`` naming the
    delegating chain, and the credential records its parent, so revoking the parent revokes it.
    """
    try:
        subject = verify_access_token(subject_token)
    except TokenRejected as rejected:
        raise _refuse(INVALID_GRANT, f"subject_token: {rejected.detail}") from None
    active_signing_key()
    now = timezone.now().replace(microsecond=0)
    receiver_id = assertion.client.instance_id
    try:
        with transaction.atomic():
            _consume_or_refuse(assertion)
            parent = _lock_credential(subject.jti)
            if (
                parent is None
                or str(parent.envelope_id) != subject.envelope_id
                or parent.status != Credential.Status.ACTIVE
                or parent.expires_at <= now
            ):
                raise _refuse(INVALID_GRANT, "subject_token is not a live credential")
            envelope = _lock_envelope(parent.envelope_id)
            receiver = _lock_instance(receiver_id)
            if envelope is None or receiver is None:
                raise _refuse(INVALID_GRANT, "subject_token is not a live credential")
            if receiver_id == parent.instance_id:
                raise _refuse(INVALID_GRANT, "delegate to another instance; this one holds the subject token")
            if receiver.agent_id != envelope.agent_id:
                raise _refuse(INVALID_GRANT, "delegation stays within one agent's instances")
            _check_requester(receiver)
            envelope_ends = _check_envelope_live(envelope, now)
            if not envelope.may_delegate:
                raise _refuse(INVALID_GRANT, "the envelope does not allow delegation")
            chain = [subject.sub, *parent.act_chain]
            if len(chain) > envelope.delegation_depth:
                raise _refuse(INVALID_GRANT, f"delegation depth {envelope.delegation_depth} is used up")
            granted = _narrow_scopes(scopes, parent.scopes, "subject token's scopes")
            if audience is not None and audience != parent.audience:
                raise _refuse(INVALID_REQUEST, "a delegated credential keeps the subject token's audience")
            # Never for an audience the envelope does not list, even one its subject token carries
            # (a credential minted before the envelope listed its audiences).
            _envelope_audience(envelope, parent.audience)
            _check_live_cap(envelope_id=envelope.id, instance_id=receiver.id, now=now)
            lifetime = credential_ttl(
                requested=ttl,
                policy_max=policy_ttl_ceiling(envelope),
                envelope_expires_at=min(parent.expires_at, envelope_ends),
                now=now,
            )
            if lifetime.total_seconds() < 1:
                raise _refuse(INVALID_GRANT, "the subject token expires now")
            minted = mint_credential(
                instance=receiver,
                envelope=envelope,
                scopes=granted,
                audience=parent.audience,
                expires_at=now + lifetime,
                parent=parent,
                act_chain=chain,
                now=now,
            )
            _record_issued(minted, instance=receiver, actor=audit.Actor.of_instance(receiver), request=request)
    except GrantRefused as refusal:
        _consume_after_refusal(assertion, refusal)
        raise
    note_instance_seen(receiver_id, now=now)
    return minted
