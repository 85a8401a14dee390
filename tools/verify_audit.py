#!/usr/bin/env python3
"""Verify a Mandate audit trail offline, without the server and without trusting it.

    python tools/verify_audit.py --rows audit.jsonl --checkpoints audit-checkpoints.jsonl \\
        --keys mandate-audit-keys.json

Needs Python 3.11 and the ``cryptography`` package, nothing else (no Django, no database):

- ``--rows``: an evidence export of the whole audit trail as JSON Lines (``/api/v1/audit/export``,
  the posture page's export, or ``manage.py export_audit``); lines that are not audit rows (the
  summary line) are skipped.
- ``--checkpoints``: the checkpoint file the server appends to (``MANDATE_AUDIT_CHECKPOINT_FILE``).
- ``--keys``: the audit public keys (``/.well-known/mandate-audit-keys.json``), fetched and pinned by
  the auditor beforehand — never from the party being audited at the time of the audit.

It checks that every checkpoint is signed by a pinned key and links to the one before it (a forged
checkpoint or a gap is found), that every chain's rows link and hash, and that each chain still
holds every row a checkpoint once signed, with the same hash (truncation, a deleted chain, a row
rewritten and every later hash recomputed are found). Rows after the newest checkpoint are linked
but can only be authenticated by the server, which holds the HMAC key (``manage.py
verify_audit_chain``). Exit 0 when everything holds, 1 naming the first bad row or checkpoint,
2 for unusable input.

The server's ``verify_audit_chain`` imports this module, so the two can never disagree.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

ZERO_HASH = "0" * 64
CHECKPOINT_VERSION = 1


# --- row content, exactly as the server hashes it (console/audit.py ``_canonical``) --------------


def canonical(row: dict) -> bytes:
    """The bytes a row's hash covers. Accepts an export line (``agent`` or ``agent_id``; ``at`` as
    ISO 8601 text with ``Z`` or ``+00:00``) or the server's own values."""
    at = row["at"]
    if isinstance(at, str):
        at = datetime.fromisoformat(at.replace("Z", "+00:00"))
    agent = row["agent_id"] if "agent_id" in row else row.get("agent")
    content = {
        "chain": row["chain"],
        "seq": int(row["seq"]),
        "at": at.isoformat(),
        "actor_type": row["actor_type"],
        "actor": row["actor"],
        "verb": row["verb"],
        "target_type": row["target_type"],
        "target_id": row["target_id"],
        "target_label": row["target_label"],
        "agent_id": str(agent) if agent else None,
        "before": row["before"],
        "after": row["after"],
        "reason": row["reason"],
        "request_id": row["request_id"],
    }
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def row_hash(prev_hash: str, row: dict) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical(row)).hexdigest()


# --- checkpoints ---------------------------------------------------------------------------------


def checkpoint_bytes(body: dict) -> bytes:
    """The exact bytes a checkpoint's signature covers (and its digest, which the next one links)."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def checkpoint_digest(body: dict) -> str:
    return hashlib.sha256(checkpoint_bytes(body)).hexdigest()


def _b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_public_keys(document: dict) -> dict:
    """``{"keys": [OKP JWK, …]}`` → {kid: Ed25519PublicKey}."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    keys = {}
    for jwk in document.get("keys", []):
        if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519" and jwk.get("kid") and jwk.get("x"):
            keys[jwk["kid"]] = Ed25519PublicKey.from_public_bytes(_b64u_decode(jwk["x"]))
    return keys


@dataclass
class Checkpoints:
    """Checkpoints that verified, folded: where each chain stood at each one."""

    bodies: list[dict] = field(default_factory=list)
    # chain → [(length, last_hash, checkpoint seq)], in checkpoint order
    positions: dict[str, list[tuple[int, str, int]]] = field(default_factory=dict)
    # chain → the newest entry (length, last_hash, floor, floor_hash, checkpoint seq)
    state: dict[str, dict] = field(default_factory=dict)

    @property
    def newest(self) -> dict | None:
        return self.bodies[-1] if self.bodies else None


def verify_checkpoints(records: Iterable[dict], keys: dict) -> tuple[Checkpoints, dict | None]:
    """Check signatures, sequence and links; return the fold and the first problem (or None)."""
    from cryptography.exceptions import InvalidSignature

    result = Checkpoints()
    prev_digest, prev_seq = ZERO_HASH, 0
    seen: dict[int, str] = {}
    for record in records:
        body = record.get("checkpoint")
        if not isinstance(body, dict) or not isinstance(body.get("seq"), int):
            return result, {"checkpoint": None, "problem": "a line of the checkpoint file is not a checkpoint"}
        seq = body["seq"]
        digest = checkpoint_digest(body)
        if seen.get(seq) == digest:
            continue  # the sink may repeat a line after a failed write; an identical copy is harmless
        key = keys.get(record.get("kid") or "")
        if key is None or body.get("kid") != record.get("kid"):
            return result, {"checkpoint": seq, "problem": f"signed by key {record.get('kid')!r}, which is not trusted"}
        try:
            key.verify(_b64u_decode(record.get("signature") or ""), checkpoint_bytes(body))
        except (InvalidSignature, ValueError):
            return result, {"checkpoint": seq, "problem": "signature does not verify: the checkpoint was forged"}
        if seq in seen:
            return result, {"checkpoint": seq, "problem": "two different checkpoints carry this number"}
        if seq != prev_seq + 1:
            missing = f"#{prev_seq + 1}" + (f"-#{seq - 1}" if seq - 1 > prev_seq + 1 else "")
            return result, {"checkpoint": seq, "problem": f"checkpoint(s) {missing} missing before it"}
        if body.get("prev") != prev_digest:
            return result, {"checkpoint": seq, "problem": "does not link to the checkpoint before it"}
        seen[seq] = digest
        prev_digest, prev_seq = digest, seq
        result.bodies.append(body)
        for chain, entry in (body.get("chains") or {}).items():
            result.positions.setdefault(chain, []).append((int(entry["length"]), entry["last_hash"], seq))
            result.state[chain] = {**entry, "checkpoint": seq}
    return result, None


# --- chains ----------------------------------------------------------------------------------------


@dataclass
class Result:
    ok: bool = True
    checked: int = 0
    first_bad: dict | None = None
    checkpoints: int = 0
    # rows after the newest checkpoint: linked, but only the server (its HMAC key) authenticates them
    unanchored: int = 0
    notes: list[str] = field(default_factory=list)

    def fail(self, problem: dict) -> Result:
        self.ok, self.first_bad = False, problem
        return self


def verify_chain_rows(
    chain: str,
    rows: Iterable[dict],
    checkpoints: Checkpoints,
    result: Result,
    *,
    row_check: Callable[[dict], str | None] | None = None,
    hash_of: Callable[[str, dict], str] = row_hash,
) -> dict | None:
    """Walk one chain's rows in seq order; the first problem, or None. Rows are dicts with the
    canonical fields plus ``seq``, ``prev_hash``, ``hash`` and (for naming) ``id``."""
    state = checkpoints.state.get(chain, {})
    floor = int(state.get("floor", 0))
    prev = state.get("floor_hash", ZERO_HASH) if floor else ZERO_HASH
    positions = [p for p in checkpoints.positions.get(chain, []) if p[0] > floor]
    signed_length = max((p[0] for p in positions), default=floor)
    expected = floor + 1
    pos = 0
    for row in rows:
        result.checked += 1
        seq = int(row["seq"])

        def bad(problem: str, row=row, seq=seq) -> dict:
            return {"id": row.get("id"), "chain": chain, "seq": seq, "problem": problem}

        if seq != expected:
            return bad(f"row(s) missing before seq {seq} (expected {expected})")
        if row["prev_hash"] != prev:
            return bad("link to the previous row is broken")
        if hash_of(prev, row) != row["hash"]:
            return bad("content does not match its hash")
        if row_check is not None:
            problem = row_check(row)
            if problem:
                return bad(problem)
        while pos < len(positions) and positions[pos][0] == seq:
            _length, signed_hash, cp = positions[pos]
            if signed_hash != row["hash"]:
                return bad(f"differs from checkpoint #{cp}: this row or one before it was rewritten and re-hashed")
            pos += 1
        if seq > signed_length:
            result.unanchored += 1
        prev = row["hash"]
        expected += 1
    if expected - 1 < signed_length:
        cp = max(p[2] for p in positions if p[0] == signed_length)
        have = expected - 1 - floor
        return {
            "id": None,
            "chain": chain,
            "seq": expected,
            "problem": f"checkpoint #{cp} signed {signed_length - floor} row(s) here, {have} remain: "
            + ("the whole chain was deleted" if have == 0 else "rows were deleted from the end"),
        }
    return None


def verify(
    chains: dict[str, Iterable[dict]] | Callable[[str], Iterable[dict]],
    chain_keys: Iterable[str],
    checkpoint_records: Iterable[dict],
    keys: dict,
    *,
    row_check: Callable[[dict], str | None] | None = None,
    hash_of: Callable[[str, dict], str] = row_hash,
) -> Result:
    """Verify the checkpoints, then every chain named by the rows or by a checkpoint. The server
    passes ``hash_of`` (its own canonical form) and ``row_check`` (the HMAC under its key)."""
    result = Result()
    checkpoints, problem = verify_checkpoints(checkpoint_records, keys)
    result.checkpoints = len(checkpoints.bodies)
    if problem:
        return result.fail(problem)
    rows_of = chains if callable(chains) else (lambda key: chains.get(key, ()))
    for chain in sorted(set(chain_keys) | set(checkpoints.state)):
        problem = verify_chain_rows(chain, rows_of(chain), checkpoints, result, row_check=row_check, hash_of=hash_of)
        if problem:
            return result.fail(problem)
    if not checkpoints.bodies:
        result.notes.append("no checkpoints: rows were only checked for their links and hashes")
    if result.unanchored and row_check is None:
        result.notes.append(
            f"{result.unanchored} row(s) after the newest checkpoint are linked but not authenticated: "
            "verify them on the server (manage.py verify_audit_chain), which holds the audit key"
        )
    return result


# --- files -----------------------------------------------------------------------------------------


def read_jsonl(path: str) -> Iterator[dict]:
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                raise SystemExit(f"{path}:{number}: not JSON") from None


def rows_by_chain(records: Iterable[dict]) -> dict[str, list[dict]]:
    chains: dict[str, list[dict]] = {}
    for record in records:
        if record.get("type", "audit") != "audit" or "chain" not in record:
            continue
        chains.setdefault(record["chain"], []).append(record)
    for rows in chains.values():
        rows.sort(key=lambda r: int(r["seq"]))
    return chains


def describe(bad: dict) -> str:
    if "checkpoint" in bad:
        return f"checkpoint #{bad['checkpoint']}: {bad['problem']}"
    return f"row id={bad.get('id')} chain={bad.get('chain')} seq={bad.get('seq')}: {bad.get('problem')}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", required=True, help="the audit export, JSON Lines")
    parser.add_argument("--checkpoints", required=True, help="the checkpoint file (MANDATE_AUDIT_CHECKPOINT_FILE)")
    parser.add_argument("--keys", required=True, help="the pinned audit public keys (mandate-audit-keys.json)")
    args = parser.parse_args(argv)
    try:
        with open(args.keys, encoding="utf-8") as handle:
            keys = load_public_keys(json.load(handle))
        chains = rows_by_chain(read_jsonl(args.rows))
        records = list(read_jsonl(args.checkpoints))
    except (OSError, json.JSONDecodeError, ValueError) as exc:
        print(f"cannot read the input: {exc}", file=sys.stderr)
        return 2
    if not keys:
        print("no Ed25519 audit keys in --keys", file=sys.stderr)
        return 2
    result = verify(chains, chains.keys(), records, keys)
    for note in result.notes:
        print(f"note: {note}")
    if not result.ok:
        print(f"AUDIT TRAIL BROKEN at {describe(result.first_bad)} ({result.checked} rows checked)")
        return 1
    print(f"audit trail intact: {result.checked} rows and {result.checkpoints} checkpoints checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
