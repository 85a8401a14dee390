"""Many audit events with their own content in one go, and the chunk events of bulk expiry.

``record_batch`` appends events that differ in target and content (unlike ``audit.record_many``,
whose rows share them): each chain head is locked once, in key order (two bulk writers cannot
deadlock), the rows are hashed through the same canonical form as ``audit.record`` and keyed, then
inserted in one statement and the heads advanced in one more.

``record_expired_credentials`` is the expiry sweep's audit: one ``credentials.expired`` event per
agent per at most ``JTIS_PER_EVENT`` credentials, listing their jtis, still chained; the jtis go to
the ``AuditJti`` index so a search by jti finds the event.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from audit import services as audit
from audit.keys import key_ring
from audit.models import AuditChain, AuditEvent, AuditJti
from core import sql

VERB_CREDENTIALS_EXPIRED = "credentials.expired"
# Bounded so one row stays small enough to read, export and verify comfortably.
JTIS_PER_EVENT = 1000


@dataclass(frozen=True)
class Item:
    target_type: str
    target_id: str
    target_label: str
    agent_id: uuid.UUID | None
    after: dict | None


def record_batch(
    verb: str,
    *,
    actor,
    items: list[Item],
    before: dict | None = None,
    reason: str = "",
    at: datetime | None = None,
) -> list[AuditEvent]:
    """Append one event per item, inside the caller's transaction; returns them with their ids."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise RuntimeError("audit.record_batch must be called inside the transaction that made the change")
    if not items:
        return []
    who = audit.as_actor(actor)
    at = at or timezone.now()
    before_s = audit.scrub(before) if before is not None else None
    reason_s = audit.scrub(reason or "")[:2000]
    request_id = audit.current_request_id()
    actor_user_id = getattr(who.user, "pk", None) if who.user is not None else None
    by_chain: dict[str, list[Item]] = {}
    for item in items:
        by_chain.setdefault(f"agent:{item.agent_id}" if item.agent_id else audit.GLOBAL_CHAIN, []).append(item)
    keys = sorted(by_chain)
    AuditChain.objects.bulk_create([AuditChain(key=k) for k in keys], ignore_conflicts=True)
    heads = {h.key: h for h in AuditChain.objects.select_for_update().filter(key__in=keys).order_by("key")}
    ring = key_ring()
    events: list[AuditEvent] = []
    for key in keys:
        head = heads[key]
        prev, seq = head.last_hash, head.length
        for item in by_chain[key]:
            seq += 1
            event = AuditEvent(
                chain=key,
                seq=seq,
                at=at,
                actor_type=who.type,
                actor=who.name[:255],
                actor_user_id=actor_user_id,
                verb=verb,
                target_type=item.target_type,
                target_id=item.target_id,
                target_label=item.target_label[:255],
                agent_id=item.agent_id,
                before=before_s,
                after=audit.scrub(item.after) if item.after is not None else None,
                reason=reason_s,
                request_id=request_id,
                prev_hash=prev,
            )
            event.hash = audit.compute_hash(prev, event)
            event.key_id, event.mac = ring.current_id, ring.mac(event.hash)
            events.append(event)
            prev = event.hash
        head.length, head.last_hash = seq, prev
    AuditEvent.objects.bulk_create(events, batch_size=500)
    _advance_heads(connection, [heads[k] for k in keys])
    return events


def _advance_heads(connection, heads: list[AuditChain]) -> None:
    sql.update_by_key(
        AuditChain,
        "key",
        ("length", "last_hash"),
        [(head.key, head.length, head.last_hash) for head in heads],
        using=connection.alias,
    )


def record_expired_credentials(
    *, actor, expired: Iterable[tuple[uuid.UUID | None, str]], at: datetime, target_type: str
) -> int:
    """One chained ``credentials.expired`` event per agent per ≤ ``JTIS_PER_EVENT`` jtis, plus the
    jti index. ``expired`` is (agent id, jti) pairs. Returns how many events it appended."""
    by_agent: dict[uuid.UUID | None, list[str]] = {}
    for agent_id, jti in expired:
        by_agent.setdefault(agent_id, []).append(jti)
    items: list[Item] = []
    for agent_id in sorted(by_agent, key=lambda a: str(a or "")):
        jtis = sorted(by_agent[agent_id])
        for start in range(0, len(jtis), JTIS_PER_EVENT):
            part = jtis[start : start + JTIS_PER_EVENT]
            items.append(
                Item(
                    target_type="agent" if agent_id else target_type,
                    target_id=str(agent_id) if agent_id else part[0],
                    target_label=f"{len(part)} credential(s)",
                    agent_id=agent_id,
                    after={"status": "expired", "count": len(part), "jtis": part},
                )
            )
    events = record_batch(
        VERB_CREDENTIALS_EXPIRED, actor=actor, items=items, before={"status": "active"}, reason="expired", at=at
    )
    _index_jtis([(jti, event.id) for event in events for jti in event.after["jtis"]])
    return len(events)


def _index_jtis(pairs: list[tuple[str, int]]) -> None:
    sql.copy_rows(AuditJti, ("jti", "event_id"), pairs)
