"""Verify the audit trail on the server: the offline verifier's walk (tools/verify_audit.py) plus
what only the server can check — every row's MAC under the audit key, and the chain heads.

Checkpoints come from the database unless the caller hands in the external file's records; their
signatures are checked with the server's own audit keys, trusted only when their private halves
decrypt (so a key planted in the database is not believed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from audit.keys import key_ring, trusted_public_keys
from audit.models import PUBLISHED_FIELDS, AuditChain, AuditCheckpoint, AuditEvent, AuditSigningKey
from tools import verify_audit as offline

ZERO_HASH = offline.ZERO_HASH
_ROW_FIELDS = (*PUBLISHED_FIELDS, "key_id", "mac")


@dataclass
class VerifyResult:
    ok: bool
    checked: int
    first_bad: dict | None
    checkpoints: int = 0
    notes: list[str] = field(default_factory=list)


def database_checkpoint_records() -> list[dict]:
    """The database's checkpoints in the external file's line format."""
    return [checkpoint_record(cp) for cp in AuditCheckpoint.objects.order_by("seq").iterator()]


def checkpoint_record(cp: AuditCheckpoint) -> dict:
    import json

    return {"checkpoint": json.loads(cp.body), "kid": cp.kid, "signature": cp.signature}


def verify_chain(
    *, checkpoint_records: list[dict] | None = None, hash_of: Callable[[str, dict], str] = offline.row_hash
) -> VerifyResult:
    """Walk every chain in order; report the first row (or checkpoint) that does not hold.
    ``audit.services.verify_chain`` passes ``hash_of``: the hash as ``record`` computes it."""
    ring = key_ring()

    def mac_problem(row: dict) -> str | None:
        return ring.check(row["hash"], row["key_id"], row["mac"])

    records = database_checkpoint_records() if checkpoint_records is None else checkpoint_records
    keys = trusted_public_keys(AuditSigningKey.objects.all())
    heads = {
        key: (length, last_hash)
        for key, length, last_hash in AuditChain.objects.values_list("key", "length", "last_hash")
    }
    chain_keys = set(heads) | set(AuditEvent.objects.order_by().values_list("chain", flat=True).distinct())

    def rows_of(chain: str):
        return AuditEvent.objects.filter(chain=chain).order_by("seq").values(*_ROW_FIELDS).iterator(chunk_size=2000)

    result = offline.verify(rows_of, chain_keys, records, keys, row_check=mac_problem, hash_of=hash_of)
    if result.ok:
        # The head must agree with the chain's last row (a deleted tail with the head left alone).
        checkpoints, _ = offline.verify_checkpoints(records, keys)
        for chain in sorted(chain_keys):
            state = checkpoints.state.get(chain, {})
            floor = int(state.get("floor", 0))
            last = AuditEvent.objects.filter(chain=chain).order_by("-seq").values_list("seq", "hash").first()
            found = last or (floor, state.get("floor_hash", ZERO_HASH) if floor else ZERO_HASH)
            if chain not in heads or tuple(heads[chain]) != tuple(found):
                result.fail(
                    {"id": None, "chain": chain, "seq": found[0] + 1, "problem": "rows missing at the end of the chain"}
                )
                break
    return VerifyResult(result.ok, result.checked, result.first_bad, result.checkpoints, result.notes)
