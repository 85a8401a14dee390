"""Signed checkpoints of the audit trail, and the external sink they go to.

A checkpoint states where every chain that moved since the previous checkpoint stands (its length
and last hash, and the purge floor if retention removed its oldest rows), the time, and the
previous checkpoint's digest; it is signed with the active audit signing key (Ed25519). It is
committed to the database first, then appended to the sink (``MANDATE_AUDIT_CHECKPOINT_FILE``),
so a crash never leaves a checkpoint in the file that covers rows the database lost. A failed
append is retried by the next run and shows on ``/readyz`` and the console's audit page until it
succeeds.

Anyone holding the checkpoint file and the public keys can then prove, without the server, that no
row a checkpoint covered was deleted or rewritten (tools/verify_audit.py).
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from audit.keys import b64u, new_signing_key_fields, private_key_of
from audit.models import AuditChain, AuditCheckpoint, AuditSigningKey
from tools.verify_audit import CHECKPOINT_VERSION, ZERO_HASH, checkpoint_bytes, checkpoint_digest

log = logging.getLogger(__name__)


class Reason:
    SCHEDULED = "scheduled"
    COMMAND = "command"
    PURGE = "purge"
    EXPORT = "export"
    REANCHOR = "re-anchor"


def active_signing_key() -> AuditSigningKey:
    """The newest active key; the first checkpoint creates one."""
    key = AuditSigningKey.objects.filter(status=AuditSigningKey.Status.ACTIVE).order_by("-created_at").first()
    if key is None:
        key = AuditSigningKey.objects.create(**new_signing_key_fields())
    return key


def rotate_signing_key() -> AuditSigningKey:
    """A new signing key; the old ones retire (they still verify the checkpoints they signed)."""
    with transaction.atomic():
        AuditSigningKey.objects.filter(status=AuditSigningKey.Status.ACTIVE).update(
            status=AuditSigningKey.Status.RETIRED, retired_at=timezone.now()
        )
        return AuditSigningKey.objects.create(**new_signing_key_fields())


def write_checkpoint(
    *, reason: str, force: bool = False, floors: dict[str, tuple[int, str]] | None = None, now: datetime | None = None
) -> AuditCheckpoint | None:
    """Sign and commit a checkpoint, then deliver it (and any earlier undelivered one) to the sink.
    Returns None when no chain moved since the previous checkpoint and ``force`` is off, or when a
    concurrent run wrote the same checkpoint first."""
    try:
        with transaction.atomic():
            checkpoint = write_checkpoint_in_transaction(reason=reason, force=force, floors=floors, now=now)
    except IntegrityError:
        log.info("audit checkpoint: another run wrote this checkpoint first")
        checkpoint = None
    deliver_pending()
    return checkpoint


def write_checkpoint_in_transaction(
    *, reason: str, force: bool = False, floors: dict[str, tuple[int, str]] | None = None, now: datetime | None = None
) -> AuditCheckpoint | None:
    """The checkpoint row, inside the caller's transaction (the purge writes its checkpoint in the
    transaction that deletes). The caller delivers it to the sink after commit."""
    now = now or timezone.now()
    prev = AuditCheckpoint.objects.select_for_update().order_by("-seq").first()
    state: dict[str, dict] = dict(prev.state) if prev else {}
    floors = floors or {}
    delta: dict[str, dict] = {}
    for key, length, last_hash in AuditChain.objects.order_by("key").values_list("key", "length", "last_hash"):
        if length == 0 and key not in floors:
            continue
        old = state.get(key, {})
        entry = {"length": int(length), "last_hash": last_hash}
        if key in floors:
            entry["floor"], entry["floor_hash"] = int(floors[key][0]), floors[key][1]
        elif "floor" in old:
            entry["floor"], entry["floor_hash"] = old["floor"], old["floor_hash"]
        if entry != old:
            delta[key] = entry
    if not delta and not force:
        return None
    signing_key = active_signing_key()
    body = {
        "v": CHECKPOINT_VERSION,
        "seq": (prev.seq if prev else 0) + 1,
        "at": now.isoformat(),
        "reason": reason,
        "prev": prev.digest if prev else ZERO_HASH,
        "kid": signing_key.kid,
        "chains": delta,
    }
    signature = b64u(private_key_of(signing_key).sign(checkpoint_bytes(body)))
    return AuditCheckpoint.objects.create(
        seq=body["seq"],
        at=now,
        reason=reason,
        body=checkpoint_bytes(body).decode(),
        digest=checkpoint_digest(body),
        kid=signing_key.kid,
        signature=signature,
        state={**state, **delta},
    )


def sink_line(checkpoint: AuditCheckpoint) -> str:
    """One line of the checkpoint file: the signed body, the key id and the signature."""
    record = {"checkpoint": json.loads(checkpoint.body), "kid": checkpoint.kid, "signature": checkpoint.signature}
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


def deliver_pending() -> int:
    """Append every committed, undelivered checkpoint to the file, oldest first; on failure record
    the error on them (shown on /readyz and the console) and leave them for the next run."""
    path = settings.MANDATE_AUDIT_CHECKPOINT_FILE
    with transaction.atomic():
        pending = list(
            AuditCheckpoint.objects.select_for_update(skip_locked=True).filter(sunk_at__isnull=True).order_by("seq")
        )
        if not pending:
            return 0
        seqs = [cp.seq for cp in pending]
        if not path:
            error = "no external sink: MANDATE_AUDIT_CHECKPOINT_FILE is empty"
            AuditCheckpoint.objects.filter(seq__in=seqs).update(sink_error=error)
            log.error("audit checkpoints %s not delivered: %s", seqs, error)
            return 0
        try:
            # O_APPEND: each write lands at the end, whatever else appends to the file.
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, "".join(sink_line(cp) for cp in pending).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            error = f"cannot append to {path}: {exc.strerror or exc}"[:500]
            AuditCheckpoint.objects.filter(seq__in=seqs).update(sink_error=error)
            log.error("audit checkpoints %s not delivered: %s", seqs, error)
            return 0
        AuditCheckpoint.objects.filter(seq__in=seqs).update(sunk_at=timezone.now(), sink_error="")
    return len(seqs)


def sink_status() -> dict:
    """For /readyz and the console: is every checkpoint delivered to the external sink? One query
    when all is well."""
    configured = bool(settings.MANDATE_AUDIT_CHECKPOINT_FILE)
    pending = Q(sunk_at__isnull=True)
    counts = AuditCheckpoint.objects.aggregate(
        undelivered=Count("seq", filter=pending),
        failing=Min("seq", filter=pending & ~Q(sink_error="")),
        newest=Max("seq"),
    )
    error = ""
    if counts["failing"] is not None:
        error = AuditCheckpoint.objects.filter(seq=counts["failing"]).values_list("sink_error", flat=True).first()
    elif not configured:
        error = "no external sink: MANDATE_AUDIT_CHECKPOINT_FILE is empty"
    return {
        "ok": not error,
        "sink": "file" if configured else None,
        "undelivered": counts["undelivered"],
        "error": error or "",
        "newest_checkpoint": counts["newest"],
    }
