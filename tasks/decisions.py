"""Request-time decisions: may this credential make this call, now?

A gateway sends the agent's credential and the call (``scope``, ``resource``, ``context``). The
checks run in a fixed order and the answer names the FIRST that fails (reason codes fixed by the
API contract): ``token_invalid`` / ``token_expired`` → ``token_revoked`` → ``audience_mismatch`` →
``instance_inactive`` →
``agent_inactive`` → ``envelope_inactive`` → ``scope_not_granted`` → ``resource_not_granted`` →
``budget_exhausted`` → ``policy_forbids`` → ``ok``.

The hot path on PostgreSQL is two prepared statements: one SELECT loading credential, instance,
agent and envelope by ``jti`` (and whether the asking gateway's API token is still valid, so a
revoked token is refused on the very next request in every process, and whether that gateway
serves the credential's audience, so a change to its audiences holds from the next request); and,
for a call that passed
every check, one statement that takes one action of the budget with a conditional ``UPDATE …
RETURNING`` (only while budget and time are left, so two gateways racing on the last action cannot
both win) and inserts the decision's activity event with ``allow``/``reason`` taken from whether the
update matched. It runs in autocommit, so it is committed before the answer leaves: no decision is
ever answered without being on record. A denial is the SELECT and one INSERT; a drifting denial adds
the drift count in the same transaction. Elsewhere (SQLite, or inside an outer transaction) the
update and the insert share one ``atomic()``. Expiry is compared here, never left to the sweep.

Batches (AuthZEN ``/access/v1/evaluations``, ``decide_batch``) run the same checks item by item in
request order. The reads come first (verification, one query for every credential); then one
transaction locks the envelopes concerned in id order, decides budget and guardrails against the
locked counts (so a budget that runs out mid-batch denies the later items, and concurrent batches
and single decisions never overspend), and writes one UPDATE per envelope and one INSERT for all
the events. ``allowed_scopes`` runs every check for each scope of a credential and writes nothing.

Signature verification (ECDSA P-256) is the most expensive step in Python, and a gateway asks about
the same token many times in its few minutes of life, so verified tokens are cached per process by
their exact text for a few seconds — the same interval for which ``identities.keys`` caches which
keys are published. ``exp`` is compared on every call, revocation is read from the database on every
call.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Model
from django.db.models.base import ModelState
from django.db.models.expressions import RawSQL
from django.utils import timezone
from prometheus_client import Counter

from audit import services as audit
from core.memo import Expiring
from core.oauth_errors import TokenRejected
from core.scrub import scrub
from core.sql import insert_rows_returning_ids, locked_rows, prepared_cursor, update_by_key
from identities.credential_jwt import VerifiedToken, verify_access_token
from identities.models import Agent, Credential, Instance
from tasks.lifecycle import revoke_envelope
from tasks.models import ActivityEvent, TaskEnvelope
from tasks.policy import Policy, active_policy
from tasks.resources import resource_granted
from tasks.seen import touch_instance

OK = "ok"
TOKEN_INVALID = "token_invalid"
TOKEN_EXPIRED = "token_expired"
TOKEN_REVOKED = "token_revoked"
AUDIENCE_MISMATCH = "audience_mismatch"
INSTANCE_INACTIVE = "instance_inactive"
AGENT_INACTIVE = "agent_inactive"
ENVELOPE_INACTIVE = "envelope_inactive"
SCOPE_NOT_GRANTED = "scope_not_granted"
RESOURCE_NOT_GRANTED = "resource_not_granted"
BUDGET_EXHAUSTED = "budget_exhausted"
POLICY_FORBIDS = "policy_forbids"
REASONS = (
    OK,
    TOKEN_INVALID,
    TOKEN_EXPIRED,
    TOKEN_REVOKED,
    AUDIENCE_MISMATCH,
    INSTANCE_INACTIVE,
    AGENT_INACTIVE,
    ENVELOPE_INACTIVE,
    SCOPE_NOT_GRANTED,
    RESOURCE_NOT_GRANTED,
    BUDGET_EXHAUSTED,
    POLICY_FORBIDS,
)
# Denials that mean the agent reached outside its envelope.
DRIFT_REASONS = frozenset({SCOPE_NOT_GRANTED, RESOURCE_NOT_GRANTED})

# last_seen_at is a hint for people and the stale sweep: write it at most this often per instance.


@dataclass(frozen=True)
class Decision:
    allow: bool
    reason: str
    detail: str
    decision_id: int | None
    envelope: str | None
    instance: str | None
    remaining_actions: int | None
    drift: bool = False

    def as_dict(self) -> dict:
        return {
            "allow": self.allow,
            "reason": self.reason,
            "detail": self.detail,
            "decision_id": str(self.decision_id) if self.decision_id is not None else None,
            "envelope": self.envelope,
            "instance": self.instance,
            "remaining_actions": self.remaining_actions,
        }


# --- verification cache ----------------------------------------------------------------------------

# Seconds: matches identities.keys' cache of which keys are published.
_verified: Expiring[VerifiedToken] = Expiring(seconds=5.0, max_entries=20_000)


def verify_token_cached(token: object) -> VerifiedToken:
    """``verify_access_token`` with a short per-process memo of successful verifications.

    Only successes are cached, keyed by the exact token text; ``exp`` is still compared on each call.
    """
    if isinstance(token, str):
        verified = _verified.get(token)
        if verified is not None:
            if verified.expires_at <= timezone.now():
                raise TokenRejected(TOKEN_EXPIRED, "the token has expired")
            return verified
    verified = verify_access_token(token)
    _verified.put(token, verified)
    return verified


def clear_verification_cache() -> None:
    _verified.clear()


# --- the decision --------------------------------------------------------------------------------


def _guardrails_allow(policy: Policy, *, subjects: dict | None = None, **call: Any) -> tuple[bool, str]:
    """The organisation's Cedar guardrails for this call (``Policy.guardrails_allow`` fails closed)."""
    allowed, detail = policy.guardrails_allow(**call, subjects=subjects)
    return bool(allowed), str(detail or "")


_LOAD: tuple[str, list[tuple[Any, ...]]] | None = None


def _load_statement() -> tuple[str, list[tuple[Any, ...]]]:
    """The hot path's one SELECT, written out once per process: compiling the equivalent
    ``select_related`` queryset costs more CPU than the database spends answering it."""
    global _LOAD
    if _LOAD is None:
        quote = connection.ops.quote_name
        layout = [(Credential, "c"), (Instance, "i"), (Agent, "a"), (TaskEnvelope, "e")]
        columns: list[str] = []
        models: list[tuple[Any, ...]] = []
        for model, alias in layout:
            fields = list(model._meta.concrete_fields)
            columns += [f"{alias}.{quote(f.column)}" for f in fields]
            models.append(
                (
                    model,
                    fields,
                    [f.attname for f in fields],
                    [(n, f) for n, f in enumerate(fields) if hasattr(f, "from_db_value")],
                )
            )
        sql = (
            f"SELECT {', '.join(columns)} FROM {quote(Credential._meta.db_table)} c "  # noqa: S608
            f"JOIN {quote(Instance._meta.db_table)} i ON i.id = c.instance_id "
            f"JOIN {quote(Agent._meta.db_table)} a ON a.id = i.agent_id "
            f"JOIN {quote(TaskEnvelope._meta.db_table)} e ON e.id = c.envelope_id "
            "WHERE c.jti"
        )
        _LOAD = (sql, models)
    return _LOAD


def load_credential(jti: str) -> Credential | None:
    """Credential, instance, agent and envelope in one query."""
    if connection.vendor != "postgresql":
        return Credential.objects.select_related("instance__agent", "envelope").filter(jti=jti).first()
    sql, models = _load_statement()
    with prepared_cursor() as cursor:
        cursor.execute(sql + " = %s", [jti])
        row = cursor.fetchone()
    return _build(row, models) if row is not None else None


def load_credentials(jtis: list[str]) -> dict[str, Credential]:
    """Several credentials (each with instance, agent, envelope) in one query, by jti."""
    if not jtis:
        return {}
    if connection.vendor != "postgresql":
        qs = Credential.objects.select_related("instance__agent", "envelope").filter(jti__in=jtis)
        return {c.jti: c for c in qs}
    sql, models = _load_statement()
    with prepared_cursor() as cursor:
        cursor.execute(sql + " = ANY(%s)", [list(jtis)])
        rows = cursor.fetchall()
    credentials = (_build(row, models) for row in rows)
    return {c.jti: c for c in credentials}


# --- the asking gateway's API token, checked in the same round trip -------------------------------
# The API-token authenticator of this endpoint remembers a token for a few seconds per process
# (tasks/api/authentication.py); whether the token may still ask is read here, from the database,
# on every decision: revoked, expired, its user deactivated or no longer a gateway or identity
# admin, and the very next call is refused, in every process.

_CALLER_SQL: dict[int, str] = {}
_LOAD_WITH_CALLER = None


def _caller_sql(role_count: int = 2) -> str:
    """``EXISTS (…)``: the API token (first parameter) is unrevoked, unexpired at the second, and
    its user active and a superuser or a member of one of the next ``role_count`` groups (a
    decision's two: gateway, identity admin; an introspection's three, ``standing_sql``)."""
    sql = _CALLER_SQL.get(role_count)
    if sql is None:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group

        from accounts.models import ApiToken

        q = connection.ops.quote_name
        user_model = get_user_model()
        memberships = user_model.groups.through._meta
        sql = (
            f"EXISTS (SELECT 1 FROM {q(ApiToken._meta.db_table)} t "  # noqa: S608 - names from the models
            f"JOIN {q(user_model._meta.db_table)} u ON u.{q(user_model._meta.pk.column)} = t.{q('user_id')} "
            "WHERE t.id = %s AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > %s) "
            "AND u.is_active AND (u.is_superuser OR EXISTS ("
            f"SELECT 1 FROM {q(memberships.db_table)} m JOIN {q(Group._meta.db_table)} g ON g.id = m.group_id "
            f"WHERE m.user_id = u.id AND g.name IN ({', '.join(['%s'] * role_count)}))))"
        )
        _CALLER_SQL[role_count] = sql
    return sql


def _serves_sql(column: str) -> str:
    """``EXISTS (…)``: the user of the API token (first parameter) serves the audience in ``column``:
    one of the audiences that user declared, or, when it declared none, the deployment's default
    (second parameter). A LEFT JOIN, so a user without declared audiences still yields one row."""
    from accounts.models import ApiToken, GatewayAudience

    q = connection.ops.quote_name
    return (
        f"EXISTS (SELECT 1 FROM {q(ApiToken._meta.db_table)} st "  # noqa: S608 - names from the models
        f"LEFT JOIN {q(GatewayAudience._meta.db_table)} sa ON sa.{q('user_id')} = st.{q('user_id')} "
        f"WHERE st.id = %s AND (sa.{q('audience')} = {column} OR (sa.id IS NULL AND {column} = %s)))"
    )


def _serves_params(token_id: uuid.UUID) -> list[Any]:
    from accounts.models import ApiToken

    return [ApiToken._meta.pk.get_db_prep_value(token_id, connection), settings.MANDATE_DEFAULT_AUDIENCE]


_CALLER_AUDIENCES_SQL = None


def caller_audiences(token_id: uuid.UUID, now: datetime) -> tuple[bool, frozenset[str]]:
    """For an action search: whether the API token may still ask, and the audiences its user
    declared (empty: the default only), in one statement."""
    global _CALLER_AUDIENCES_SQL
    if _CALLER_AUDIENCES_SQL is None:
        from accounts.models import ApiToken, GatewayAudience

        q = connection.ops.quote_name
        _CALLER_AUDIENCES_SQL = (
            f"SELECT 0, CASE WHEN {_caller_sql()} THEN 'yes' ELSE 'no' END "  # noqa: S608 - names from the models
            f"UNION ALL SELECT 1, sa.{q('audience')} FROM {q(GatewayAudience._meta.db_table)} sa "
            f"JOIN {q(ApiToken._meta.db_table)} st ON st.{q('user_id')} = sa.{q('user_id')} WHERE st.id = %s"
        )
    params = [*_caller_params(token_id, now), _serves_params(token_id)[0]]
    with connection.cursor() as cursor:
        cursor.execute(_CALLER_AUDIENCES_SQL, params)
        rows = cursor.fetchall()
    allowed = any(kind == 0 and value == "yes" for kind, value in rows)
    return allowed, frozenset(value for kind, value in rows if kind == 1)


def serves(declared: frozenset[str], audience: str) -> bool:
    """Whether a gateway that declared ``declared`` serves ``audience`` (none declared: the default)."""
    return audience in declared if declared else audience == settings.MANDATE_DEFAULT_AUDIENCE


_CALLER_CONSTANTS: tuple[Any, tuple[str, str]] | None = None


def _caller_constants() -> tuple[Any, tuple[str, str]]:
    """The API token's primary-key field and a decision's two roles, looked up once per process."""
    global _CALLER_CONSTANTS
    if _CALLER_CONSTANTS is None:
        from accounts.models import ApiToken
        from accounts.roles import GATEWAY, IDENTITY_ADMIN

        _CALLER_CONSTANTS = (ApiToken._meta.pk, (GATEWAY, IDENTITY_ADMIN))
    return _CALLER_CONSTANTS


def _caller_params(token_id: uuid.UUID, now: datetime) -> list[Any]:
    return standing_params(token_id, now, _caller_constants()[1])


def standing_sql(role_count: int) -> str:
    """For another endpoint that remembers its caller per process (introspection): ``EXISTS (…)``,
    true while the API token may still act with one of ``role_count`` roles. Its parameters:
    ``standing_params``."""
    return _caller_sql(role_count)


def standing_params(token_id: uuid.UUID, now: datetime, roles: Sequence[str]) -> list[Any]:
    pk = _caller_constants()[0]
    return [pk.get_db_prep_value(token_id, connection), connection.ops.adapt_datetimefield_value(now), *roles]


def may_still_act(token_id: uuid.UUID, now: datetime, roles: Sequence[str]) -> bool:
    """``standing_sql`` alone, for a request that reads nothing it could ride in."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {_caller_sql(len(roles))}", standing_params(token_id, now, roles))
        return bool(cursor.fetchone()[0])


def caller_may_ask(token_id: uuid.UUID, now: datetime) -> bool:
    """The check alone, for a decision that loads no credential (a token that did not verify)."""
    return may_still_act(token_id, now, _caller_constants()[1])


def load_credential_for(
    jti: str, *, caller_token_id: uuid.UUID, now: datetime
) -> tuple[Credential | None, bool | None, bool | None]:
    """``load_credential`` plus, in the same statement, whether the asking API token may still ask
    and whether its user serves the credential's audience (both None when no credential row came
    back to carry the answers)."""
    if connection.vendor != "postgresql":
        column = f"{connection.ops.quote_name(Credential._meta.db_table)}.{connection.ops.quote_name('audience')}"
        credential = (
            Credential.objects.select_related("instance__agent", "envelope")
            # Names from the models, values as parameters.
            .annotate(
                caller_ok=RawSQL(_caller_sql(), _caller_params(caller_token_id, now)),  # noqa: S611
                audience_ok=RawSQL(_serves_sql(column), _serves_params(caller_token_id)),  # noqa: S611
            )
            .filter(jti=jti)
            .first()
        )
        if credential is None:
            return None, None, None
        return credential, bool(credential.caller_ok), bool(credential.audience_ok)
    sql, models = _load_with_caller_statement()
    with prepared_cursor() as cursor:
        cursor.execute(sql + " = %s", [*_caller_params(caller_token_id, now), *_serves_params(caller_token_id), jti])
        row = cursor.fetchone()
    if row is None:
        return None, None, None
    return _build(row[:-2], models), bool(row[-2]), bool(row[-1])


def load_credentials_for(
    jtis: list[str], *, caller_token_id: uuid.UUID, now: datetime
) -> tuple[dict[str, tuple[Credential, bool]], bool | None]:
    """``load_credentials`` plus, in the same statement, whether the asking API token may still ask
    (None when no credential row came back to carry the answer) and, for each credential, whether
    the token's user serves its audience: ``({jti: (credential, audience served)}, caller may ask)``."""
    if not jtis:
        return {}, None
    if connection.vendor != "postgresql":
        column = f"{connection.ops.quote_name(Credential._meta.db_table)}.{connection.ops.quote_name('audience')}"
        found = list(
            Credential.objects.select_related("instance__agent", "envelope")
            # Names from the models, values as parameters.
            .annotate(
                caller_ok=RawSQL(_caller_sql(), _caller_params(caller_token_id, now)),  # noqa: S611
                audience_ok=RawSQL(_serves_sql(column), _serves_params(caller_token_id)),  # noqa: S611
            )
            .filter(jti__in=jtis)
        )
        return {c.jti: (c, bool(c.audience_ok)) for c in found}, bool(found[0].caller_ok) if found else None
    sql, models = _load_with_caller_statement()
    with prepared_cursor() as cursor:
        cursor.execute(
            sql + " = ANY(%s)", [*_caller_params(caller_token_id, now), *_serves_params(caller_token_id), list(jtis)]
        )
        rows = cursor.fetchall()
    loaded = {}
    for row in rows:
        credential = _build(row[:-2], models)
        loaded[credential.jti] = (credential, bool(row[-1]))
    return loaded, bool(rows[0][-2]) if rows else None


def _load_with_caller_statement() -> tuple[str, list[tuple[Any, ...]]]:
    """The load statement with the caller's two answers as its last two columns, up to ``WHERE
    c.jti`` (the caller appends ``= %s`` or ``= ANY(%s)``); written once per process."""
    global _LOAD_WITH_CALLER
    sql, models = _load_statement()
    if _LOAD_WITH_CALLER is None:
        select, _, rest = sql.partition(" FROM ")
        column = f"c.{connection.ops.quote_name('audience')}"
        _LOAD_WITH_CALLER = f"{select}, {_caller_sql()}, {_serves_sql(column)} FROM {rest}"
    return _LOAD_WITH_CALLER, models


def _loaded(model: type[Model], alias: str, attnames: list[str], values: list[Any]) -> Any:
    """A model instance as ``from_db`` builds it with every concrete field loaded, without
    ``Model.__init__``'s per-field descriptor and keyword handling (which cost more than the
    query's own client work). None of these models has ``pre_init``/``post_init`` receivers or
    its own ``__init__``/``from_db``; tests/tasks/test_decisions_fast_load.py compares the result
    with the ORM's."""
    obj: Any = Model.__new__(model)
    obj.__dict__.update(zip(attnames, values, strict=True))
    state = obj._state = ModelState()
    state.adding, state.db = False, alias
    return obj


def _build(row: tuple, models: list[tuple[Any, ...]]) -> Credential:
    objects: list[Any] = []
    start = 0
    alias = connection.alias
    for model, fields, attnames, converted in models:
        values = list(row[start : start + len(fields)])
        start += len(fields)
        for n, field in converted:
            values[n] = field.from_db_value(values[n], None, connection)
        objects.append(_loaded(model, alias, attnames, values))
    credential, instance, agent, envelope = objects
    instance.agent = agent
    credential.instance, credential.envelope = instance, envelope
    return credential


@dataclass
class _Outcome:
    reason: str
    detail: str
    credential: Credential | None = None
    verified: VerifiedToken | None = None
    # Whether the asking API token may still ask, read with the credential (None: not read).
    caller_ok: bool | None = None

    @property
    def allow(self) -> bool:
        return self.reason == OK

    @property
    def attributed(self) -> Credential | None:
        """The credential the decision is attributed to: none when the token could not be tied to
        a credential we issued."""
        return self.credential if self.reason != TOKEN_INVALID else None


def _identify(token: object, subject: str | None) -> VerifiedToken | _Outcome:
    """The token's verification, and for AuthZEN the subject it must name; or the
    token_invalid/token_expired outcome that ends the checks."""
    try:
        verified = verify_token_cached(token)
    except TokenRejected as rejected:
        return _Outcome(rejected.reason, rejected.detail)
    if subject is not None and subject != verified.sub:
        # AuthZEN names the subject beside the credential: a gateway may not ask about one agent
        # with another's token.
        return _Outcome(TOKEN_INVALID, "the subject id is not the credential's subject (sub)")
    return verified


def _check_loaded(
    verified: VerifiedToken,
    credential: Credential | None,
    *,
    scope: str,
    resource: str,
    now: datetime,
    until_budget: bool = False,
    context: dict | None = None,
    policy: Policy | None = None,
    audience_ok: bool | None = None,
    standing: tuple[str, str] | None = None,
) -> _Outcome:
    """The checks after verification, in contract order, against the loaded credential. Reads only.

    ``audience_ok``: whether the asking gateway serves the credential's audience (None: not asked,
    for callers inside Mandate that act for no gateway). ``standing``: ``_standing``'s answer for
    this credential, when the caller already has it (a batch asks once per credential).

    With ``until_budget`` it stops before the budget: reason ``""`` means every check so far passed,
    and the caller (a batch, which counts its own budget) decides budget and guardrails."""
    if credential is None:
        return _Outcome(TOKEN_INVALID, "no credential was issued with this jti")
    reason, detail = standing if standing is not None else _standing(verified, credential, now, audience_ok)
    out = _Outcome(reason, detail, credential, verified)
    if reason:
        return out
    envelope = credential.envelope
    if scope not in verified.scopes or scope not in credential.scopes or scope not in envelope.scopes:
        out.reason, out.detail = SCOPE_NOT_GRANTED, f"scope {scope!r} is not granted to this credential"
    elif not resource_granted(envelope.resources, resource):
        out.reason, out.detail = RESOURCE_NOT_GRANTED, f"resource {resource!r} is outside the envelope's resources"
    elif not until_budget:
        _budget_then_guardrails(
            out,
            credential,
            used=envelope.actions_used,
            scope=scope,
            resource=resource,
            context=context or {},
            policy=policy or active_policy(),
        )
    return out


def _standing(
    verified: VerifiedToken, credential: Credential, now: datetime, audience_ok: bool | None
) -> tuple[str, str]:
    """The checks that depend on the credential alone, not on the call, in contract order:
    ``(reason, detail)`` of the first that fails, or ``("", "")`` when all pass."""
    instance, envelope = credential.instance, credential.envelope
    if str(envelope.id) != verified.envelope_id or instance.spiffe_id != verified.sub:
        return TOKEN_INVALID, "the token's claims do not match the credential issued"
    if credential.status == Credential.Status.REVOKED:
        return TOKEN_REVOKED, f"the credential was revoked: {credential.revoke_reason or 'revoked'}"
    if credential.status == Credential.Status.EXPIRED or credential.expires_at <= now:
        return TOKEN_EXPIRED, "the credential has expired"
    if audience_ok is False:
        return (
            AUDIENCE_MISMATCH,
            f"the credential is for {credential.audience[:200]!r}, an audience this gateway does not serve",
        )
    if instance.status != Instance.Status.ACTIVE:
        return INSTANCE_INACTIVE, f"instance is {instance.status}"
    if instance.agent.status != Agent.Status.ACTIVE:
        return AGENT_INACTIVE, f"agent {instance.agent.slug} is {instance.agent.status}"
    if envelope.state not in TaskEnvelope.LIVE_STATES:
        return ENVELOPE_INACTIVE, f"envelope is {envelope.state}"
    if envelope.expires_at is None or envelope.expires_at <= now:
        return ENVELOPE_INACTIVE, "envelope's time is up"
    return "", ""


def _budget_then_guardrails(
    out: _Outcome,
    credential: Credential,
    *,
    used: int,
    scope: str,
    resource: str,
    context: dict,
    policy: Policy,
    subjects: dict | None = None,
) -> None:
    """The last two checks, for a call that passed all the others: the budget (``used`` actions of
    the envelope's), then the organisation's guardrails (``subjects``: a batch's, see
    ``Guardrails.evaluate``)."""
    envelope, instance = credential.envelope, credential.instance
    if used >= envelope.max_actions:
        out.reason, out.detail = BUDGET_EXHAUSTED, f"all {envelope.max_actions} actions of the envelope are used"
        return
    allowed, why = _guardrails_allow(
        policy,
        instance=instance,
        agent=instance.agent,
        envelope=envelope,
        scope=scope,
        resource=resource,
        context=context,
        subjects=subjects,
    )
    if not allowed:
        out.reason, out.detail = POLICY_FORBIDS, why or "an organisation guardrail forbids this call"
    else:
        out.reason, out.detail = OK, "inside the envelope"


def _check(
    *,
    token: object,
    scope: str,
    resource: str,
    context: dict,
    now: datetime,
    policy: Policy,
    subject: str | None = None,
    caller_token_id: uuid.UUID | None = None,
) -> _Outcome:
    """Run the checks in contract order, stopping at the first that fails. Reads only."""
    verified = _identify(token, subject)
    if isinstance(verified, _Outcome):
        return verified
    audience_ok: bool | None = None
    if caller_token_id is None:
        credential, caller_ok = load_credential(verified.jti), None
    else:
        credential, caller_ok, audience_ok = load_credential_for(verified.jti, caller_token_id=caller_token_id, now=now)
    out = _check_loaded(
        verified,
        credential,
        scope=scope,
        resource=resource,
        now=now,
        context=context,
        policy=policy,
        audience_ok=audience_ok,
    )
    out.caller_ok = caller_ok
    return out


_TAKE_ACTION_SQL = None


def _take_action(envelope_id: uuid.UUID, now: datetime) -> tuple[int, int] | None:
    """Use one action of the budget if any is left and the envelope is live: ``(used, max)`` or None.

    One conditional statement, so of two gateways racing on the last action exactly one matches.
    """
    global _TAKE_ACTION_SQL
    if _TAKE_ACTION_SQL is None:
        # The table name comes from the model, every value is a parameter.
        table = connection.ops.quote_name(TaskEnvelope._meta.db_table)
        _TAKE_ACTION_SQL = (
            f"UPDATE {table} SET actions_used = actions_used + 1 "  # noqa: S608
            "WHERE id = %s AND actions_used < max_actions AND state IN (%s, %s) AND expires_at > %s "
            "RETURNING actions_used, max_actions"
        )
    pk = TaskEnvelope._meta.pk.get_db_prep_value(envelope_id, connection)
    with connection.cursor() as cursor:
        cursor.execute(_TAKE_ACTION_SQL, [pk, *TaskEnvelope.LIVE_STATES, connection.ops.adapt_datetimefield_value(now)])
        row = cursor.fetchone()
    return (row[0], row[1]) if row else None


def _budget_denial(envelope_id: uuid.UUID, now: datetime) -> tuple[str, str]:
    """Why the conditional update did not match (another decision won the race, or the envelope
    ended in between). Rare: only after a lost race."""
    envelope = (
        TaskEnvelope.objects.filter(pk=envelope_id).only("state", "expires_at", "actions_used", "max_actions").first()
    )
    if envelope is None or envelope.state not in TaskEnvelope.LIVE_STATES:
        return ENVELOPE_INACTIVE, f"envelope is {envelope.state if envelope else 'gone'}"
    if envelope.expires_at is None or envelope.expires_at <= now:
        return ENVELOPE_INACTIVE, "envelope's time is up"
    return BUDGET_EXHAUSTED, f"all {envelope.max_actions} actions of the envelope are used"


_DECIDE_AND_RECORD_SQL = None
_EVENT_COLUMNS = (
    "kind",
    "agent_id",
    "instance_id",
    "envelope_id",
    "jti",
    "scope",
    "resource",
    "allow",
    "reason",
    "outcome",
    "drift",
    "policy_version",
    "details",
    "occurred_at",
    "recorded_at",
    "reported_by",
)


def _sql_word(value: str) -> str:
    """A constant of ours (a state, a kind, a reason code) as an SQL string literal."""
    if not re.fullmatch(r"[a-z_]+", value):
        raise ValueError(f"not a plain word: {value!r}")
    return f"'{value}'"


def _take_action_and_record(event: ActivityEvent, now: datetime) -> tuple[str, int | None]:
    """PostgreSQL: take one action and insert the decision's event in ONE statement — one round trip,
    one commit. The event's ``allow``/``reason`` come from whether the conditional update matched,
    so the record can never disagree with the budget. Returns ``(reason, remaining)`` and sets
    ``event.id``."""
    global _DECIDE_AND_RECORD_SQL
    if _DECIDE_AND_RECORD_SQL is None:
        envelopes = connection.ops.quote_name(TaskEnvelope._meta.db_table)
        events = connection.ops.quote_name(ActivityEvent._meta.db_table)
        columns = ", ".join(_EVENT_COLUMNS)
        # Table and column names come from the models, the states and reason codes from their
        # constants (fixed words, checked below); every value from a request is a parameter.
        live = ", ".join(_sql_word(state) for state in TaskEnvelope.LIVE_STATES)
        _DECIDE_AND_RECORD_SQL = (
            f"WITH taken AS (UPDATE {envelopes} SET actions_used = actions_used + 1 "  # noqa: S608
            f"  WHERE id = %(envelope)s AND actions_used < max_actions AND state IN ({live})"
            "  AND expires_at > %(now)s RETURNING actions_used, max_actions), "
            "outcome AS (SELECT EXISTS (SELECT 1 FROM taken) AS allowed, "
            f"  (SELECT state IN ({live}) AND expires_at > %(now)s "
            f"FROM {envelopes} WHERE id = %(envelope)s) AS live), "
            f"recorded AS (INSERT INTO {events} ({columns}) "
            f"  SELECT {_sql_word(ActivityEvent.Kind.DECISION)}, %(agent)s, %(instance)s, %(envelope)s, %(jti)s, "
            "  %(scope)s, %(resource)s, o.allowed, "
            f"  CASE WHEN o.allowed THEN {_sql_word(OK)} WHEN o.live THEN {_sql_word(BUDGET_EXHAUSTED)} "
            f"ELSE {_sql_word(ENVELOPE_INACTIVE)} END, "
            "  '', false, %(policy_version)s, %(details)s::jsonb, %(now)s, %(now)s, %(reported_by)s FROM outcome o "
            "  RETURNING id, allow, reason) "
            "SELECT r.id, r.reason, t.actions_used, t.max_actions FROM recorded r LEFT JOIN taken t ON true"
        )
    params = {
        "envelope": event.envelope_id,
        "now": now,
        "agent": event.agent_id,
        "instance": event.instance_id,
        "jti": event.jti,
        "scope": event.scope,
        "resource": event.resource,
        "policy_version": event.policy_version,
        "details": json.dumps(event.details),
        "reported_by": event.reported_by,
    }
    with prepared_cursor() as cursor:
        cursor.execute(_DECIDE_AND_RECORD_SQL, params)
        event_id, reason, used, most = cursor.fetchone()
    event.id, event.reason, event.allow = event_id, reason, reason == OK
    return reason, (max(most - used, 0) if used is not None else None)


def record_drift(*, envelope_id: uuid.UUID, now: datetime, count: int = 1, policy: Policy | None = None) -> int | None:
    """Flag drift on a live envelope (conditional increment); returns the new count, or None when
    the envelope is no longer live. Call inside the transaction that records the drifting event."""
    changed = TaskEnvelope.objects.filter(pk=envelope_id, state__in=TaskEnvelope.LIVE_STATES).update(
        drift_count=F("drift_count") + count, last_drift_at=now
    )
    if not changed:
        return None
    return TaskEnvelope.objects.filter(pk=envelope_id).values_list("drift_count", flat=True).first()


def revoke_for_drift_if_due(*, envelope_id: uuid.UUID, drift_count: int | None, policy: Policy | None = None) -> bool:
    """Per policy, revoke the envelope once its drift count reaches the limit. Returns True if revoked."""
    if drift_count is None:
        return False
    policy = policy or active_policy()
    limit = policy.drift_revoke_after
    if not limit or drift_count < limit:
        return False
    envelope = TaskEnvelope.objects.select_related("agent", "instance").filter(pk=envelope_id).first()
    if envelope is None or envelope.state not in TaskEnvelope.LIVE_STATES:
        return False
    revoke_envelope(
        envelope=envelope,
        actor=audit.Actor.of_policy("drift-limit"),
        reason=f"drift limit reached: {drift_count} calls or reports outside the envelope "
        f"(policy revokes after {limit})",
    )
    return True


# Incremented in memory per decision (no query); exposed at /metrics (console/metrics.py).
DECISIONS = Counter(
    "mandate_decisions_total", "Decisions answered, by reason (ok or the first failing check).", ["reason"]
)


def _decision_fields(
    out: _Outcome, *, scope: str, resource: str, context: dict, policy: Policy, now: datetime, reported_by: str
) -> dict[str, Any]:
    """The activity record of one decision, as field values by attname, attributed to the
    credential's instance and envelope unless the token could not be tied to a credential we
    issued. The single-statement path and a batch write them as parameters and need no model
    instance (building one cost as much as the checks)."""
    credential = out.attributed
    return dict(
        kind=ActivityEvent.Kind.DECISION,
        agent_id=credential.instance.agent_id if credential is not None else None,
        instance_id=credential.instance_id if credential is not None else None,
        envelope_id=credential.envelope_id if credential is not None else None,
        jti=credential.jti if credential is not None else "",
        scope=scope[:130],
        resource=resource[:512],
        allow=out.allow,
        reason=out.reason,
        outcome="",
        drift=out.reason in DRIFT_REASONS,
        policy_version=policy.version,
        details={"context": scrub(context)} if context else {},  # secrets out, by key and value
        occurred_at=now,
        recorded_at=now,
        reported_by=reported_by[:255],
    )


class CallerRefused(Exception):
    """The API token that asked may no longer ask (revoked, expired, user inactive or without the
    gateway or identity-admin role). Nothing was decided or recorded."""


def _refuse_unless_caller_may_ask(caller_token_id: uuid.UUID | None, now: datetime, known: bool | None = None) -> None:
    """``known``: the answer read with the credential, when it was; otherwise one statement asks."""
    if caller_token_id is None:
        return
    allowed = known if known is not None else caller_may_ask(caller_token_id, now)
    if not allowed:
        raise CallerRefused("the API token may no longer ask for decisions")


def _served_by_caller(caller_token_id: uuid.UUID | None, now: datetime) -> frozenset[str] | None:
    """For an action search: refuse a caller that may no longer ask, else the audiences it
    declared (None: no caller, no audience check) — one statement."""
    if caller_token_id is None:
        return None
    allowed, declared = caller_audiences(caller_token_id, now)
    if not allowed:
        raise CallerRefused("the API token may no longer ask for decisions")
    return declared


def _audience_ok(declared: frozenset[str] | None, credential: Credential | None) -> bool | None:
    if declared is None or credential is None:
        return None
    return serves(declared, credential.audience)


def decide(
    *,
    token: object,
    scope: str,
    resource: str,
    context: dict | None = None,
    reported_by: str = "",
    subject: str | None = None,
    now: datetime | None = None,
    caller_token_id: uuid.UUID | None = None,
) -> Decision:
    """Decide one call, record it durably, and return the answer (see the module docstring).

    ``subject``, when given (AuthZEN names it beside the token), must be the credential's ``sub``.
    With ``caller_token_id`` (the asking gateway's API token) the token's validity is read in the
    statement that loads the credential; ``CallerRefused`` when it may no longer ask."""
    now = now or timezone.now()
    context = context or {}
    policy = active_policy()
    out = _check(
        token=token,
        scope=scope,
        resource=resource,
        context=context,
        now=now,
        policy=policy,
        subject=subject,
        caller_token_id=caller_token_id,
    )
    _refuse_unless_caller_may_ask(caller_token_id, now, out.caller_ok)
    credential = out.credential
    # Read only when ``identified`` (or on an allowed or drifting call, which implies it): then all
    # three are set, which the type checker cannot follow through the flag.
    envelope = cast("TaskEnvelope", credential.envelope if credential is not None else None)
    instance = cast("Instance", credential.instance if credential is not None else None)
    identified = out.attributed is not None
    remaining = envelope.remaining_actions if identified else None
    drift = out.reason in DRIFT_REASONS
    drift_count = None
    fields = _decision_fields(
        out, scope=scope, resource=resource, context=context, policy=policy, now=now, reported_by=reported_by
    )
    one_statement = out.allow and connection.vendor == "postgresql" and not connection.in_atomic_block
    # The single statement only reads the event's values (and sets id, reason, allow): no model needed.
    event: Any = SimpleNamespace(id=None, **fields) if one_statement else ActivityEvent(**fields)
    if one_statement:
        # The hot path: one statement takes the action and writes the record, committed on return.
        reason, taken_remaining = _take_action_and_record(event, now)
        if reason == OK:
            remaining = taken_remaining
        else:
            out.reason = reason
            out.detail = (
                f"all {envelope.max_actions} actions of the envelope are used"
                if reason == BUDGET_EXHAUSTED
                else "envelope ended while deciding"
            )
            remaining = 0 if reason == BUDGET_EXHAUSTED else remaining
    elif out.allow:
        remaining = _take_action_and_record_portably(out, event, envelope, now, remaining)
    elif drift:
        # The drifting call's record and the envelope's drift count commit together.
        with transaction.atomic():
            event.save(force_insert=True)
            drift_count = record_drift(envelope_id=envelope.id, now=now)
    else:
        event.save(force_insert=True)  # one statement, committed on return (autocommit)
    if identified and out.reason != TOKEN_REVOKED:
        touch_instance(instance, now)
    if drift:
        revoke_for_drift_if_due(envelope_id=envelope.id, drift_count=drift_count, policy=policy)
    DECISIONS.labels(out.reason).inc()
    return Decision(
        allow=out.allow,
        reason=out.reason,
        detail=out.detail,
        decision_id=event.id,
        envelope=str(envelope.id) if identified else None,
        instance=str(instance.id) if identified else None,
        remaining_actions=remaining,
        drift=drift,
    )


# --- many decisions in one request ------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One call to decide: what ``decide`` takes, as a value (a batch is a list of them)."""

    token: str
    scope: str
    resource: str
    context: dict
    subject: str | None = None


@dataclass
class _EnvelopeBudget:
    """An envelope's state as locked for a batch, counted forward item by item."""

    live: bool
    used: int
    most: int
    drift_count: int
    last_drift_at: datetime | None = None
    taken: int = 0
    drifted: int = 0


_BUDGET_FIELDS = ("state", "expires_at", "actions_used", "max_actions", "drift_count", "last_drift_at")


# Reasons an envelope that ended (or ended within the batch) overrides: they come after
# envelope_inactive in the contract's order; "" is "passed every check before the budget".
_AFTER_ENVELOPE = frozenset({"", SCOPE_NOT_GRANTED, RESOURCE_NOT_GRANTED})


def decide_batch(
    calls: list[Call | None],
    *,
    stop_on: bool | None = None,
    reported_by: str = "",
    now: datetime | None = None,
    caller_token_id: uuid.UUID | None = None,
) -> list[Decision | None]:
    """Decide several calls as ``decide`` would one after another, in their order, and record them.

    A ``None`` in ``calls`` is an item the caller could not read: it counts as a denial for the
    stopping rule and is neither decided nor recorded (its place in the answer stays ``None``).
    ``stop_on=False`` stops after the first denial, ``True`` after the first permit, ``None`` never;
    the answer ends with the item that stopped it, and nothing after it is decided or recorded.

    Reads (verification, then one query for every credential and the asking API token's standing)
    happen first, and a token that may no longer ask is refused before anything is decided; then,
    in one transaction, the envelopes concerned are locked in id order (so concurrent batches
    neither overspend nor deadlock), budget and guardrails are decided item by item against the
    locked counts, and the batch is written: one UPDATE for the envelopes (actions taken, drift)
    and one INSERT for every event. Committed before it returns, so no answer leaves unrecorded."""
    now = now or timezone.now()
    policy = active_policy()
    verified = [_identify(call.token, call.subject) if call is not None else None for call in calls]
    jtis = sorted({v.jti for v in verified if isinstance(v, VerifiedToken)})
    # Every credential with, in the same statement, whether the asking API token may still ask and
    # whether it serves each credential's audience; a batch with no credential to load asks alone.
    served: dict[str, bool] = {}
    if caller_token_id is None:
        loaded = load_credentials(jtis)
    else:
        with_caller, caller_ok = load_credentials_for(jtis, caller_token_id=caller_token_id, now=now)
        _refuse_unless_caller_may_ask(caller_token_id, now, known=caller_ok)
        loaded = {jti: credential for jti, (credential, _) in with_caller.items()}
        served = {jti: audience_ok for jti, (_, audience_ok) in with_caller.items()}
    outs: list[_Outcome | None] = []
    standings: dict[tuple[str, str, str], tuple[str, str]] = {}
    for call, ident in zip(calls, verified, strict=True):
        if call is None or ident is None:
            outs.append(None)  # an item the caller could not read
            continue
        if isinstance(ident, _Outcome):
            outs.append(ident)  # the token's verification ended the checks
            continue
        credential = loaded.get(ident.jti)
        standing = None
        if credential is not None:  # the credential's own checks, once per credential and claims
            key = (ident.jti, ident.sub, ident.envelope_id)
            standing = standings.get(key)
            if standing is None:
                standing = standings[key] = _standing(ident, credential, now, served.get(ident.jti))
        outs.append(
            _check_loaded(
                ident,
                credential,
                scope=call.scope,
                resource=call.resource,
                now=now,
                until_budget=True,
                standing=standing,
            )
        )
    concerned = sorted(
        {
            o.credential.envelope_id
            for o in outs
            if o is not None and o.credential is not None and o.reason in _AFTER_ENVELOPE
        },
        key=str,
    )
    decided: list[tuple[_Outcome, int | None] | None] = []
    rows: list[dict[str, Any]] = []
    subjects: dict = {}  # the guardrails' per-subject keys, kept as long as ``loaded`` keeps its objects
    with transaction.atomic():
        budgets = {
            row["pk"]: _EnvelopeBudget(
                live=row["state"] in TaskEnvelope.LIVE_STATES
                and row["expires_at"] is not None
                and row["expires_at"] > now,
                used=row["actions_used"],
                most=row["max_actions"],
                drift_count=row["drift_count"],
                last_drift_at=row["last_drift_at"],
            )
            for row in locked_rows(TaskEnvelope, concerned, _BUDGET_FIELDS)
        }
        for call, out in zip(calls, outs, strict=True):
            if call is None or out is None:
                decided.append(None)
                if stop_on is False:
                    break
                continue
            remaining = _decide_in_batch(call, out, budgets, policy=policy, subjects=subjects)
            decided.append((out, remaining))
            rows.append(
                _decision_fields(
                    out,
                    scope=call.scope,
                    resource=call.resource,
                    context=call.context,
                    policy=policy,
                    now=now,
                    reported_by=reported_by,
                )
            )
            if stop_on is not None and out.allow is stop_on:
                break
        # The rows are locked: the counts as counted forward are the new values, all envelopes in
        # one statement.
        update_by_key(
            TaskEnvelope,
            "id",
            ("actions_used", "drift_count", "last_drift_at"),
            [
                (envelope_id, budget.used, budget.drift_count, now if budget.drifted else budget.last_drift_at)
                for envelope_id, budget in budgets.items()
                if budget.taken or budget.drifted
            ],
        )
        ids = iter(insert_rows_returning_ids(ActivityEvent, rows, _EVENT_COLUMNS))
    answered = [_batch_decision(*item, next(ids)) if item is not None else None for item in decided]
    _after_batch(outs, answered, budgets, policy=policy, now=now)
    by_reason: dict[str, int] = {}
    for answer in answered:
        if answer is not None:
            by_reason[answer.reason] = by_reason.get(answer.reason, 0) + 1
    for reason, count in by_reason.items():
        DECISIONS.labels(reason).inc(count)
    return answered


def _decide_in_batch(
    call: Call,
    out: _Outcome,
    budgets: dict[uuid.UUID, _EnvelopeBudget],
    *,
    policy: Policy,
    subjects: dict,
) -> int | None:
    """One item of a batch against the locked envelope counts: settles ``out`` and returns the
    actions left to report (``subjects``: the batch's, for the guardrails)."""
    credential = out.attributed
    budget = budgets.get(credential.envelope_id) if credential is not None else None
    if credential is not None and budget is None and out.reason in _AFTER_ENVELOPE:
        out.reason, out.detail = ENVELOPE_INACTIVE, "envelope is gone"
    elif credential is not None and budget is not None and out.reason in _AFTER_ENVELOPE:
        if not budget.live:
            out.reason, out.detail = ENVELOPE_INACTIVE, "envelope ended while deciding"
        elif out.reason in DRIFT_REASONS:
            budget.drifted += 1
            budget.drift_count += 1
            limit = policy.drift_revoke_after
            if limit and budget.drift_count >= limit:
                budget.live = False  # revoked after this batch commits; later items see it ended
        else:
            _budget_then_guardrails(
                out,
                credential,
                used=budget.used,
                scope=call.scope,
                resource=call.resource,
                context=call.context,
                policy=policy,
                subjects=subjects,
            )
            if out.allow:
                budget.used += 1
                budget.taken += 1
    if credential is None:
        return None
    return max(budget.most - budget.used, 0) if budget is not None else credential.envelope.remaining_actions


def _batch_decision(out: _Outcome, remaining: int | None, decision_id: int) -> Decision:
    """A batch item's answer, once its record has its id."""
    credential = out.attributed
    return Decision(
        allow=out.allow,
        reason=out.reason,
        detail=out.detail,
        decision_id=decision_id,
        envelope=str(credential.envelope_id) if credential is not None else None,
        instance=str(credential.instance_id) if credential is not None else None,
        remaining_actions=remaining,
        drift=out.reason in DRIFT_REASONS,
    )


def _after_batch(
    outs: list[_Outcome | None],
    answered: list[Decision | None],
    budgets: dict[uuid.UUID, _EnvelopeBudget],
    *,
    policy: Policy,
    now: datetime,
) -> None:
    """After the commit, as ``decide`` does after its own: touch each instance seen, and revoke an
    envelope whose drift reached the policy's limit."""
    touched = set()
    for out, decision in zip(outs, answered, strict=False):
        if out is None or out.credential is None or decision is None or decision.instance is None:
            continue
        if decision.reason == TOKEN_REVOKED:
            continue
        if decision.instance not in touched:
            touched.add(decision.instance)
            touch_instance(out.credential.instance, now)
    for envelope_id, budget in budgets.items():
        if budget.drifted:
            revoke_for_drift_if_due(envelope_id=envelope_id, drift_count=budget.drift_count, policy=policy)


# --- what would be allowed ------------------------------------------------------------------------


def allowed_scopes(
    *,
    token: object,
    resource: str,
    context: dict | None = None,
    subject: str | None = None,
    now: datetime | None = None,
    caller_token_id: uuid.UUID | None = None,
) -> list[str]:
    """The scopes a full decision on ``resource`` would allow right now (every check, guardrails
    and budget included), in the envelope's order. Decides nothing, records nothing, spends nothing."""
    now = now or timezone.now()
    declared = _served_by_caller(caller_token_id, now)
    verified = _identify(token, subject)
    if isinstance(verified, _Outcome):
        return []
    credential = load_credential(verified.jti)
    if credential is None:
        return []
    policy = active_policy()
    candidates = dict.fromkeys(s for s in credential.envelope.scopes if s in verified.scopes and s in credential.scopes)
    return [
        scope
        for scope in candidates
        if _check_loaded(
            verified,
            credential,
            scope=scope,
            resource=resource,
            now=now,
            context=context or {},
            policy=policy,
            audience_ok=_audience_ok(declared, credential),
        ).allow
    ]


def _take_action_and_record_portably(
    out: _Outcome, event: ActivityEvent, envelope: TaskEnvelope, now: datetime, remaining: int | None
) -> int | None:
    """Any database: the conditional update and the event's insert in one transaction."""
    with transaction.atomic():
        taken = _take_action(envelope.id, now)
        if taken is None:
            out.reason, out.detail = _budget_denial(envelope.id, now)
            remaining = 0 if out.reason == BUDGET_EXHAUSTED else remaining
            event.reason = out.reason
        else:
            remaining = max(taken[1] - taken[0], 0)
        event.allow = out.allow
        event.save(force_insert=True)
    return remaining
