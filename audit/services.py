"""The one way to write the audit trail: ``audit.record(verb, actor=…, target=…, …)``.

Every row is scrubbed of secrets and linked into its chain (see ``AuditChain``) inside the caller's
transaction, so a lifecycle change and its audit row commit or roll back together.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, cast

from django.db import transaction
from django.utils import timezone

from audit import verify as _verify
from audit.keys import key_ring
from audit.models import AuditChain, AuditEvent
from audit.verify import VerifyResult
from core.request_id import current_request_id
from core.scrub import scrub as scrub_value
from core.sql import statement_cursor

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.utils import CursorWrapper
    from django.http import HttpRequest
    from rest_framework.request import Request

GLOBAL_CHAIN = "global"


class _Workload(Protocol):
    # An agent instance, named by what it is rather than imported: the audit trail sits below identities.
    @property
    def spiffe_id(self) -> str: ...


@dataclass(frozen=True)
class Actor:
    """Who did it: a user, an agent instance, a named policy rule, the scheduler or the system."""

    type: str
    name: str
    user: Any = None

    @classmethod
    def of_user(cls, user: User) -> Actor:
        return cls(AuditEvent.ActorType.USER, user.get_username(), user)

    @classmethod
    def of_instance(cls, instance: _Workload) -> Actor:
        return cls(AuditEvent.ActorType.INSTANCE, instance.spiffe_id)

    @classmethod
    def of_policy(cls, rule_name: str) -> Actor:
        return cls(AuditEvent.ActorType.POLICY, rule_name)

    @classmethod
    def scheduler(cls, job: str = "scheduler") -> Actor:
        return cls(AuditEvent.ActorType.SCHEDULER, job)

    @classmethod
    def system(cls, name: str = "system") -> Actor:
        return cls(AuditEvent.ActorType.SYSTEM, name)


# Whoever a service acts for: a signed-in user, an ``Actor`` (an agent instance, a policy rule, the
# scheduler) or nobody, which records the system. Every service's ``actor`` has this type.
ActorLike: TypeAlias = "User | Actor | None"
# The request a change came from, if any: only its request id is read, for the audit row.
RequestLike: TypeAlias = "HttpRequest | Request"


def as_actor(actor: ActorLike) -> Actor:
    """Accept an ``Actor`` or a user object."""
    if isinstance(actor, Actor):
        return actor
    if actor is None:
        return Actor.system()
    return Actor.of_user(actor)


def scrub(value: Any) -> Any:
    """A JSON-safe copy of ``value`` with every secret replaced (``core.scrub``: by key name at any
    depth and case, and by what a value looks like)."""
    return scrub_value(value)


def _content(
    *,
    chain: str,
    seq: int | str,
    at: str,
    actor_type: str,
    actor: str,
    verb: str,
    target_type: str,
    target_id: str,
    target_label: str,
    agent_id: str | None,
    before: Any,
    after: Any,
    reason: str,
    request_id: str,
) -> dict[str, Any]:
    """What a row's hash covers. ``record``, ``record_many`` and ``verify_chain`` all go through here."""
    return {
        "chain": chain,
        "seq": seq,
        "at": at,
        "actor_type": actor_type,
        "actor": actor,
        "verb": verb,
        "target_type": target_type,
        "target_id": target_id,
        "target_label": target_label,
        "agent_id": agent_id,
        "before": before,
        "after": after,
        "reason": reason,
        "request_id": request_id,
    }


def _encode_content(content: dict) -> str:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _canonical(event: AuditEvent) -> bytes:
    return _encode_content(
        _content(
            chain=event.chain,
            seq=event.seq,
            at=event.at.isoformat(),
            actor_type=event.actor_type,
            actor=event.actor,
            verb=event.verb,
            target_type=event.target_type,
            target_id=event.target_id,
            target_label=event.target_label,
            agent_id=str(event.agent_id) if event.agent_id else None,
            before=event.before,
            after=event.after,
            reason=event.reason,
            request_id=event.request_id,
        )
    ).encode()


# The fields that differ from row to row in record_many; everything else is shared by the batch.
_PER_ROW = ("agent_id", "chain", "seq", "target_id", "target_label")


def _canonical_template(**shared: Any) -> tuple[list[str], dict[str, str]]:
    """The canonical text of a batch, cut where the per-row values go: ``[text, field, text, …]``.

    It is made by ``_content``/``_encode_content`` themselves with a marker in each per-row field,
    so the bulk path can never drift from what ``verify_chain`` recomputes (a new field in
    ``_content`` is part of the template automatically)."""
    marks = {name: f"\x1f{name}\x1f" for name in _PER_ROW}
    text = _encode_content(_content(**shared, **marks))
    encoded = {_encode(mark): name for name, mark in marks.items()}
    pieces = re.split("(" + "|".join(re.escape(e) for e in encoded) + ")", text)
    if len(pieces) != 2 * len(_PER_ROW) + 1:
        # A shared value that happens to spell a marker: no template, every row encodes in full.
        return [], encoded
    return pieces, encoded


def compute_hash(prev_hash: str, event: AuditEvent) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + _canonical(event)).hexdigest()


def _target_parts(target: Any) -> tuple[str, str, str]:
    if isinstance(target, tuple):
        target_type, target_id, *labels = target
        return target_type, str(target_id), (labels[0] if labels else "")
    target_type = getattr(target, "audit_type", None) or target._meta.model_name
    label = getattr(target, "audit_label", None) or str(target)
    return target_type, str(target.pk), label


def _agent_id_of(target: Any) -> uuid.UUID | None:
    getter = getattr(target, "audit_agent_id", None)
    if getter is None:
        return None
    return getter() if callable(getter) else getter


_statements: dict[str, tuple[str, str, str | None]] = {}


def _append_statements(connection: BaseDatabaseWrapper) -> tuple[str, str, str | None]:
    """(advance the head, insert the row [and set the head's hash], set the head's hash or None),
    built once per database vendor."""
    cached = _statements.get(connection.vendor)
    if cached is not None:
        return cached
    q = connection.ops.quote_name
    chain, events = q(AuditChain._meta.db_table), q(AuditEvent._meta.db_table)
    key, length, last_hash = q("key"), q("length"), q("last_hash")
    columns = ", ".join(q(field.column) for field in _EVENT_FIELDS)
    placeholders = ", ".join(["%s"] * len(_EVENT_FIELDS))
    # Locks the head row (until the caller's transaction ends) and takes the next seq in one go.
    advance = f"UPDATE {chain} SET {length} = {length} + 1 WHERE {key} = %s RETURNING {length}, {last_hash}"  # noqa: S608
    insert = f"INSERT INTO {events} ({columns}) VALUES ({placeholders}) RETURNING {q('id')}"  # noqa: S608
    set_hash = f"UPDATE {chain} SET {last_hash} = %s WHERE {key} = %s"  # noqa: S608
    if connection.vendor == "postgresql":
        # One round trip: the head's new hash rides along with the row's INSERT.
        cached = (advance, f"WITH head AS ({set_hash}) {insert}", None)
    else:
        cached = (advance, insert, set_hash)
    _statements[connection.vendor] = cached
    return cached


# Every column but the id, in model order; values go through each field's own get_db_prep_save,
# exactly as the ORM's INSERT would send them.
_EVENT_FIELDS = [field for field in AuditEvent._meta.concrete_fields if not field.primary_key]


def _advance_head(connection: BaseDatabaseWrapper, cursor: CursorWrapper, statement: str, key: str) -> tuple[int, str]:
    """Lock the chain's head and advance its length: (this event's seq, the previous hash). Only a
    chain's first writer inserts the head (insert-if-missing, then advance), so two first writers
    cannot both create it."""
    cursor.execute(statement, [key])
    row = cursor.fetchone()
    if row is None:
        AuditChain.objects.bulk_create([AuditChain(key=key)], ignore_conflicts=True)
        cursor.execute(statement, [key])
        row = cursor.fetchone()
    return int(row[0]), row[1]


def record(
    verb: str,
    *,
    actor: ActorLike,
    target: Any,
    before: dict | None = None,
    after: dict | None = None,
    reason: str = "",
    request: RequestLike | None = None,
    agent_id: uuid.UUID | None = None,
    at: datetime | None = None,
    chain: str | None = None,
) -> AuditEvent:
    """Append one audit event. Must run inside the transaction that made the change.

    ``chain`` puts an event about no agent on a chain of its own instead of ``global`` (sign-in
    failures use ``signin``), so a burst of such events never queues other writes behind one head."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit.record must be called inside the transaction that made the change")
    who = as_actor(actor)
    target_type, target_id, label = _target_parts(target)
    if agent_id is None and not isinstance(target, tuple):
        agent_id = _agent_id_of(target)
    chain_key = f"agent:{agent_id}" if agent_id else (chain or GLOBAL_CHAIN)
    connection = transaction.get_connection()
    advance, insert, set_hash = _append_statements(connection)
    with statement_cursor(connection.alias) as cursor:
        seq, prev_hash = _advance_head(connection, cursor, advance, chain_key)
        event = AuditEvent(
            chain=chain_key,
            seq=seq,
            at=at or timezone.now(),
            actor_type=who.type,
            actor=who.name[:255],
            actor_user=who.user if who.user is not None and getattr(who.user, "pk", None) else None,
            verb=verb,
            target_type=target_type,
            target_id=target_id,
            target_label=label[:255],
            agent_id=agent_id,
            before=scrub(before) if before is not None else None,
            after=scrub(after) if after is not None else None,
            reason=scrub(reason or "")[:2000],
            request_id=(getattr(request, "request_id", "") if request is not None else "") or current_request_id(),
            prev_hash=prev_hash,
        )
        event.hash = compute_hash(prev_hash, event)
        ring = key_ring()
        event.key_id, event.mac = ring.current_id, ring.mac(event.hash)
        values = [field.get_db_prep_save(getattr(event, field.attname), connection) for field in _EVENT_FIELDS]
        if set_hash is None:
            cursor.execute(insert, [event.hash, chain_key, *values])
        else:
            cursor.execute(insert, values)
        event.id = cursor.fetchone()[0]
        if set_hash is not None:
            cursor.execute(set_hash, [event.hash, chain_key])
    event._state.adding = False
    event._state.db = connection.alias
    return event


def verify_chain(*, checkpoint_records: list[dict] | None = None) -> VerifyResult:
    """Walk every chain (audit/verify.py): links, hashes recomputed exactly as ``record`` computes
    them, every row's HMAC under the audit key, the heads, and the signed checkpoints (the
    database's, or the external file's records when given)."""
    return _verify.verify_chain(
        checkpoint_records=checkpoint_records,
        # The row's columns as attributes: what _canonical reads, without a model instance per row.
        hash_of=lambda prev, row: compute_hash(prev, cast("AuditEvent", SimpleNamespace(**row))),
    )


def _encode(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_many(
    verb: str,
    *,
    actor: ActorLike,
    target_type: str,
    targets: list[tuple[uuid.UUID | None, str, str]],
    before: dict | None = None,
    after: dict | None = None,
    reason: str = "",
    at: datetime | None = None,
) -> int:
    """Append one event per ``(agent_id, target_id, target_label)``, all sharing verb, actor,
    before/after and reason — the sweeps' bulk path. Must run inside the transaction that made the
    change; returns how many rows it appended.

    Each chain head is locked once per call (in key order, so two bulk writers cannot deadlock
    each other), the rows are linked in memory and inserted in one statement (COPY on PostgreSQL),
    and every head is advanced in one UPDATE. The canonical text comes from ``_canonical_template``
    (``_content`` with the per-row fields filled in), so ``verify_chain`` checks these rows like any
    other.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit.record_many must be called inside the transaction that made the change")
    if not targets:
        return 0
    who = as_actor(actor)
    at = at or timezone.now()
    before_s = scrub(before) if before is not None else None
    after_s = scrub(after) if after is not None else None
    reason_s = scrub(reason or "")[:2000]
    request_id = current_request_id()
    actor_name = who.name[:255]
    actor_user_id = getattr(who.user, "pk", None) if who.user is not None else None

    by_chain: dict[str, list[tuple[str | None, str, str]]] = {}
    for target_agent_id, target_id, label in targets:
        key = f"agent:{target_agent_id}" if target_agent_id else GLOBAL_CHAIN
        by_chain.setdefault(key, []).append(
            (str(target_agent_id) if target_agent_id else None, str(target_id), (label or "")[:255])
        )
    keys = sorted(by_chain)
    AuditChain.objects.bulk_create([AuditChain(key=k) for k in keys], ignore_conflicts=True)
    heads = {h.key: h for h in AuditChain.objects.select_for_update().filter(key__in=keys).order_by("key")}

    shared: dict[str, Any] = {
        "at": at.isoformat(),
        "actor_type": who.type,
        "actor": actor_name,
        "verb": verb,
        "target_type": target_type,
        "before": before_s,
        "after": after_s,
        "reason": reason_s,
        "request_id": request_id,
    }
    pieces, encoded = _canonical_template(**shared)
    # [text, marker, text, marker, …]: odd places take the row's encoded value for that field.
    slots = [(i, encoded[piece]) for i, piece in enumerate(pieces) if i % 2]
    sha256 = hashlib.sha256
    ring = key_ring()
    key_id, mac_of = ring.current_id, ring.mac
    rows: list[tuple] = []
    new_heads: list[tuple[str, int, str]] = []
    for key in keys:
        head = heads[key]
        prev = head.last_hash
        seq = head.length
        for agent_id, target_id, label in by_chain[key]:
            seq += 1
            row: dict[str, Any] = {
                "agent_id": agent_id,
                "chain": key,
                "seq": seq,
                "target_id": target_id,
                "target_label": label,
            }
            if pieces:
                for i, name in slots:
                    pieces[i] = _encode(row[name])
                canonical = "".join(pieces)
            else:
                canonical = _encode_content(_content(**shared, **row))
            digest = sha256(prev.encode() + b"\n" + canonical.encode()).hexdigest()
            rows.append((key, seq, agent_id, target_id, label, prev, digest, mac_of(digest)))
            prev = digest
        new_heads.append((key, seq, prev))

    connection = transaction.get_connection()
    if connection.vendor == "postgresql":
        _copy_events(
            connection,
            rows,
            at=at,
            actor_type=who.type,
            actor=actor_name,
            actor_user_id=actor_user_id,
            verb=verb,
            target_type=target_type,
            before=before_s,
            after=after_s,
            reason=reason_s,
            request_id=request_id,
            key_id=key_id,
        )
        with connection.cursor() as cursor:
            values = ",".join(["(%s,%s,%s)"] * len(new_heads))
            cursor.execute(
                f"UPDATE {AuditChain._meta.db_table} AS h SET length = v.length::bigint, last_hash = v.last_hash "  # noqa: S608
                f"FROM (VALUES {values}) AS v(key, length, last_hash) WHERE h.key = v.key",
                [item for head in new_heads for item in head],
            )
    else:
        AuditEvent.objects.bulk_create(
            [
                AuditEvent(
                    chain=key,
                    seq=seq,
                    at=at,
                    actor_type=who.type,
                    actor=actor_name,
                    actor_user_id=actor_user_id,
                    verb=verb,
                    target_type=target_type,
                    target_id=target_id,
                    target_label=label,
                    agent_id=agent_id,
                    before=before_s,
                    after=after_s,
                    reason=reason_s,
                    request_id=request_id,
                    prev_hash=prev,
                    hash=digest,
                    key_id=key_id,
                    mac=mac,
                )
                for key, seq, agent_id, target_id, label, prev, digest, mac in rows
            ],
            batch_size=500,
        )
        for key, length, last_hash in new_heads:
            AuditChain.objects.filter(key=key).update(length=length, last_hash=last_hash)
    return len(rows)


def _copy_events(
    connection: BaseDatabaseWrapper,
    rows: list[tuple],
    *,
    at: datetime,
    actor_type: str,
    actor: str,
    actor_user_id: Any,
    verb: str,
    target_type: str,
    before: Any,
    after: Any,
    reason: str,
    request_id: str,
    key_id: str,
) -> None:
    """COPY the linked rows into the audit table: one round trip for thousands of rows."""
    meta = AuditEvent._meta
    names = [
        "chain",
        "seq",
        "at",
        "actor_type",
        "actor",
        "actor_user",
        "verb",
        "target_type",
        "target_id",
        "target_label",
        "agent_id",
        "before",
        "after",
        "reason",
        "request_id",
        "prev_hash",
        "hash",
        "key_id",
        "mac",
    ]
    # Every name is a concrete field, never a reverse relation: each has a column.
    columns = ", ".join(connection.ops.quote_name(meta.get_field(n).column) for n in names)  # type: ignore[union-attr,arg-type]
    before_j = json.dumps(before) if before is not None else None
    after_j = json.dumps(after) if after is not None else None
    with connection.cursor() as cursor:
        raw = cursor.cursor  # the psycopg cursor under Django's wrapper
        with raw.copy(f"COPY {connection.ops.quote_name(meta.db_table)} ({columns}) FROM STDIN") as copy:
            for key, seq, agent_id, target_id, label, prev, digest, mac in rows:
                copy.write_row(
                    (
                        key,
                        seq,
                        at,
                        actor_type,
                        actor,
                        actor_user_id,
                        verb,
                        target_type,
                        target_id,
                        label,
                        agent_id,
                        before_j,
                        after_j,
                        reason,
                        request_id,
                        prev,
                        digest,
                        key_id,
                        mac,
                    )
                )
