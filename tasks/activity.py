"""The activity record: batches of events reported by agents and gateways.

A batch of up to ``MAX_BATCH`` events is validated whole before anything is written; the first
problem rejects it with ``ValidationFailed`` naming the event's index and field
(``events[3].occurred_at``) and nothing is stored. A valid batch is stored in one statement —
``COPY … FROM STDIN`` on PostgreSQL, a multi-row INSERT elsewhere — in one transaction, together
with the drift flags it raises. ``occurred_at`` must lie within ``FUTURE_SKEW`` ahead of the server's
clock and at most ``MANDATE_EVENT_MAX_AGE_DAYS`` behind it; ``details`` are stored scrubbed of
secrets (``core.scrub``).

Attribution: an agent reporting with its own credential reports for its instance and envelope
only. A gateway names the agent's ``token`` on every event; its signature must verify, but a token
that expired up to ``REPORT_LEEWAY_SECONDS`` ago, or was revoked since, is still accepted here: the
gateway reports what already happened, and losing that record would help nobody. (Decisions, which
grant something, accept neither.)

Drift: a reported event whose ``scope`` is not one of its envelope's scopes, or whose ``resource``
no envelope pattern matches, is flagged ``drift`` and counts against its envelope (see
``tasks.decisions.record_drift``); the policy decides when drift revokes the envelope.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core import sql
from core.errors import ValidationFailed
from core.oauth_errors import TokenRejected
from core.scrub import scrub
from identities.credential_jwt import verify_access_token
from identities.models import Credential
from tasks.decisions import (
    load_credentials,
    record_drift,
    revoke_for_drift_if_due,
    verify_token_cached,
)
from tasks.models import ActivityEvent
from tasks.policy import active_policy
from tasks.resources import resource_granted
from tasks.seen import touch_instance

MAX_BATCH = 1000
MAX_DETAILS_BYTES = 8192
# How far in the future a reported occurred_at may lie (clock skew between gateway and us).
FUTURE_SKEW = timedelta(minutes=5)
REPORTED_KINDS = frozenset(
    {ActivityEvent.Kind.TOOL_CALL, ActivityEvent.Kind.SECRET_ACCESS, ActivityEvent.Kind.PRIVILEGE_ESCALATION}
)
_FIELDS = frozenset({"kind", "scope", "resource", "outcome", "occurred_at", "details", "token"})
_COLUMNS = (
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


def report_leeway_seconds() -> int:
    return settings.MANDATE_CREDENTIAL_MAX_TTL


@dataclass(frozen=True)
class Reporter:
    """Who sends the batch: an agent's own credential, or a gateway (then each event names a token)."""

    name: str
    credential: Credential | None = None


def storable(text: str) -> bool:
    """PostgreSQL text holds neither NUL nor lone surrogates; refuse them as bad input, not a 500."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def json_text(value) -> str | None:
    """``value`` as compact JSON that jsonb accepts (no NaN/Infinity, no NUL), or None."""
    try:
        out = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (ValueError, TypeError):
        return None
    if "\\u0000" in out or not storable(out):
        return None
    return out


def _bad(index: int, field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, field=f"events[{index}].{field}")


def _text(event: dict, index: int, field: str, limit: int) -> str:
    value = event.get(field, "")
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit or not storable(value):
        raise _bad(index, field, f"a string of at most {limit} characters")
    return value


def _occurred_at(event: dict, index: int, now: datetime) -> datetime:
    value = event.get("occurred_at")
    if value is None:
        return now
    if not isinstance(value, str) or len(value) > 40:
        raise _bad(index, "occurred_at", "an ISO 8601 time")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise _bad(index, "occurred_at", "an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if when > now + FUTURE_SKEW:
        raise _bad(index, "occurred_at", "lies in the future (more than 5 minutes ahead of the server's clock)")
    max_age = settings.MANDATE_EVENT_MAX_AGE_DAYS
    if when < now - timedelta(days=max_age):
        raise _bad(index, "occurred_at", f"is older than {max_age} days (MANDATE_EVENT_MAX_AGE_DAYS)")
    return when


def _verify_reported(token: str):
    """The token's verified claims, or the ``TokenRejected`` that explains why not."""
    try:
        try:
            return verify_token_cached(token)
        except TokenRejected as rejected:
            if rejected.reason != "token_expired":
                raise
            return verify_access_token(token, leeway=report_leeway_seconds())
    except TokenRejected as rejected:
        return rejected


def _credentials_for_batch(events: list) -> dict[str, Credential | str]:
    """Each distinct token of a gateway's batch: its Credential, or why it is refused. One query."""
    verified = {}
    for event in events:
        token = event.get("token") if isinstance(event, dict) else None
        if isinstance(token, str) and token and token not in verified:
            verified[token] = _verify_reported(token)
    loaded = load_credentials([v.jti for v in verified.values() if not isinstance(v, TokenRejected)])
    out: dict[str, Credential | str] = {}
    for token, claims in verified.items():
        if isinstance(claims, TokenRejected):
            out[token] = claims.detail
            continue
        credential = loaded.get(claims.jti)
        if (
            credential is None
            or str(credential.envelope_id) != claims.envelope_id
            or credential.instance.spiffe_id != claims.sub
        ):
            out[token] = "no credential was issued with this token"
        else:
            out[token] = credential
    return out


def validate_batch(events: object, *, reporter: Reporter, now: datetime) -> tuple[list[tuple], dict]:
    """Every event checked, or ``ValidationFailed`` for the first bad one. Returns the rows to store
    and the instances they belong to."""
    if not isinstance(events, list) or not events:
        raise ValidationFailed(f"a non-empty list of at most {MAX_BATCH} events", field="events")
    if len(events) > MAX_BATCH:
        raise ValidationFailed(f"at most {MAX_BATCH} events per batch; got {len(events)}", field="events")
    credentials = _credentials_for_batch(events) if reporter.credential is None else {}
    rows, instances, per_credential = [], {}, {}
    reported_by = reporter.name[:255]
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            raise ValidationFailed("an object", field=f"events[{index}]")
        unknown = event.keys() - _FIELDS
        if unknown:
            raise _bad(index, sorted(unknown)[0], "unknown field")
        kind = event.get("kind")
        if not isinstance(kind, str) or kind not in REPORTED_KINDS:
            raise _bad(index, "kind", "one of tool_call, secret_access, privilege_escalation")
        scope = _text(event, index, "scope", 130)
        resource = _text(event, index, "resource", 512)
        outcome = _text(event, index, "outcome", 64)
        occurred_at = _occurred_at(event, index, now)
        details = event.get("details")
        if details is None:
            details_json = "{}"
        elif not isinstance(details, dict):
            raise _bad(index, "details", "an object")
        else:
            details_json = json_text(scrub(details))  # secrets never stored: by key name and by value
            if details_json is None:
                raise _bad(index, "details", "JSON without NaN, Infinity or NUL characters")
            if len(details_json) > MAX_DETAILS_BYTES:
                raise _bad(index, "details", f"at most {MAX_DETAILS_BYTES} bytes of JSON")
        if reporter.credential is not None:
            if "token" in event:
                raise _bad(index, "token", "an agent reports with its own credential; leave token out")
            credential = reporter.credential
        else:
            token = event.get("token")
            credential = credentials.get(token) if isinstance(token, str) else None
            if credential is None:
                raise _bad(index, "token", "the agent's credential this event belongs to")
            if isinstance(credential, str):
                raise _bad(index, "token", credential)
        # A batch repeats a few credentials and resources many times: work each out once.
        ident = per_credential.get(credential.jti)
        if ident is None:
            envelope = credential.envelope
            ident = per_credential[credential.jti] = (
                (credential.instance.agent_id, credential.instance_id, credential.envelope_id, credential.jti),
                frozenset(envelope.scopes),
                envelope.resources,
                {},
            )
            instances[credential.instance_id] = credential.instance
        prefix, granted_scopes, patterns, resource_ok = ident
        if resource and resource not in resource_ok:
            resource_ok[resource] = resource_granted(patterns, resource)
        drift = bool((scope and scope not in granted_scopes) or (resource and not resource_ok[resource]))
        rows.append(
            (kind, *prefix, scope, resource, None, "", outcome, drift, "", details_json, occurred_at, now, reported_by)
        )
    return rows, instances


def _store(rows: list[tuple]) -> None:
    """One statement: COPY on PostgreSQL (the fastest way in), one multi-row INSERT elsewhere."""
    sql.copy_rows(ActivityEvent, _COLUMNS, rows)


def ingest_events(*, events: object, reporter: Reporter, now: datetime | None = None) -> int:
    """Validate the whole batch, store it in one statement, flag drift. Returns how many were stored."""
    now = now or timezone.now()
    rows, instances = validate_batch(events, reporter=reporter, now=now)
    drift_by_envelope: dict = {}
    for row in rows:
        if row[10]:
            drift_by_envelope[row[3]] = drift_by_envelope.get(row[3], 0) + 1
    counts = {}
    with transaction.atomic():
        _store(rows)
        for envelope_id, count in sorted(drift_by_envelope.items(), key=lambda item: str(item[0])):
            counts[envelope_id] = record_drift(envelope_id=envelope_id, now=now, count=count)
    for instance in instances.values():
        touch_instance(instance, now)
    if counts:
        policy = active_policy()
        for envelope_id, drift_count in counts.items():
            revoke_for_drift_if_due(envelope_id=envelope_id, drift_count=drift_count, policy=policy)
    return len(rows)
