"""The scheduled sweeps: they make stored state and the console true after time has passed.

Correctness never depends on them — every check at request time compares times itself — but
they do the cascades (an expired envelope's credentials are revoked) and keep lists honest.

Each sweep selects with an indexed query on a live state (the partial indexes name the sweep
that uses them), works in chunks, claims rows with a conditional update or a locked re-check so
two workers running the same sweep at once change each row once, writes one audit event per
changed row (credential expiry: one per agent per chunk), logs and skips a row that fails, and
returns how many rows it changed.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from audit import services as audit
from audit.batch import record_expired_credentials
from audit.services import ActorLike
from core.sql import fast
from identities import keys
from identities.models import Credential, Instance
from tasks import lifecycle
from tasks.models import TaskEnvelope
from tasks.policy import active_policy

log = logging.getLogger(__name__)

# At most this many rows change in one transaction: short locks, bounded WAL per commit.
CHUNK_SIZE = 10_000


def _fatal(exc: BaseException) -> bool:
    """Errors that must stop a sweep rather than be logged and skipped as one bad row."""
    return isinstance(exc, SoftTimeLimitExceeded | KeyboardInterrupt | SystemExit)


# --- credentials ---------------------------------------------------------------------------------


def expire_overdue_credentials(
    *, now: datetime | None = None, chunk_size: int = CHUNK_SIZE, max_chunks: int | None = None
) -> int:
    """active → expired for every credential whose ``exp`` has passed, in chunks of at most
    ``chunk_size`` rows per transaction, with one ``credentials.expired`` event per agent per chunk
    listing the jtis."""
    now = now or timezone.now()
    actor = audit.Actor.scheduler("expire-credentials")
    total = 0
    chunks = 0
    skip: set[str] = set()
    while max_chunks is None or chunks < max_chunks:
        chunks += 1
        try:
            with transaction.atomic():
                changed, full = _expire_credential_chunk(now=now, limit=chunk_size, skip=skip, actor=actor)
        except Exception as exc:
            if _fatal(exc):
                raise
            log.exception("expire_overdue_credentials: a chunk failed; retrying it row by row")
            changed, full = _expire_credentials_one_by_one(now=now, limit=chunk_size, skip=skip, actor=actor)
        total += changed
        if not full:
            break
    log.info("expire_overdue_credentials: %d credential(s) expired", total)
    return total


def _expire_credential_chunk(
    *, now, limit: int, skip: set[str], actor: ActorLike, only: str | None = None
) -> tuple[int, bool]:
    """Claim up to ``limit`` overdue credentials and write their events. Returns (changed, full)
    where ``full`` says a further chunk may be waiting."""
    if connection.vendor == "postgresql":
        # No fsync wait per chunk: a crash can lose only whole chunks (state and audit together),
        # which the next run redoes.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
    claimed = _claim_credentials(now=now, limit=limit, skip=skip, only=only)
    if not claimed:
        return 0, False
    agents = dict(
        Instance.objects.filter(id__in={instance_id for _, instance_id in claimed}).values_list("id", "agent_id")
    )
    # One chained event per agent per chunk (≤ JTIS_PER_EVENT jtis each), findable by jti through
    # the jti index: a row per credential made the sweep several times slower than its UPDATE.
    record_expired_credentials(
        actor=actor,
        expired=[(agents.get(_as_uuid(instance_id)), jti) for jti, instance_id in claimed],
        at=now,
        target_type=Credential.audit_type,
    )
    return len(claimed), len(claimed) == limit


def _claim_credentials(*, now, limit: int, skip: set[str], only: str | None = None) -> list[tuple[str, object]]:
    """The conditional update: only rows still ``active`` change, and RETURNING says exactly which.

    On PostgreSQL one statement selects the chunk through ``cred_live_exp_idx``, locks it with
    SKIP LOCKED (a second worker takes the next rows instead of waiting on ours) and updates it by
    ctid (a TID scan). ``WHERE jti IN (SELECT … LIMIT n)`` looks equivalent but the planner turns
    it into a hash semi-join over a sequential scan of the whole table. A ctid whose row another
    transaction changed meanwhile simply matches nothing; the row waits for the next run.
    """
    sql, params = claim_credentials_sql(now=now, limit=limit, skip=skip, only=only)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(jti, instance_id) for jti, instance_id in cursor.fetchall()]


def claim_credentials_sql(
    *, now, limit: int, skip: set[str] = frozenset(), only: str | None = None, portable: bool = False
):
    """The claim statement and its parameters (the bench EXPLAINs exactly this); ``portable`` asks
    for the statement SQLite runs (tests/core/test_sql_paths.py runs both on PostgreSQL)."""
    table = Credential._meta.db_table
    where = ["status = %s", "expires_at <= %s"]
    params: list = [Credential.Status.ACTIVE, now]
    if only is not None:
        where.append("jti = %s")
        params.append(only)
    if skip:
        where.append(f"jti NOT IN ({','.join(['%s'] * len(skip))})")
        params.extend(sorted(skip))
    select = f"SELECT {{col}} FROM {table} WHERE {' AND '.join(where)} ORDER BY expires_at LIMIT %s"  # noqa: S608
    params.append(limit)
    if fast(connection, portable=portable):
        sql = (
            f"UPDATE {table} SET status = %s "  # noqa: S608
            f"WHERE ctid = ANY(ARRAY({select.format(col='ctid')} FOR UPDATE SKIP LOCKED)) AND status = %s "
            "RETURNING jti, instance_id"
        )
    else:
        # SQLite: one writer at a time (IMMEDIATE transactions), so select-then-update is safe.
        sql = (
            f"UPDATE {table} SET status = %s WHERE jti IN ({select.format(col='jti')}) AND status = %s "  # noqa: S608
            "RETURNING jti, instance_id"
        )
    return sql, [Credential.Status.EXPIRED, *params, Credential.Status.ACTIVE]


def _as_uuid(value) -> uuid.UUID:
    # SQLite hands back the instance id as text, PostgreSQL as a UUID.
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _expire_credentials_one_by_one(*, now, limit: int, skip: set[str], actor: ActorLike) -> tuple[int, bool]:
    """After a failed chunk: the same rows one transaction each, so one bad row is logged and
    skipped (for the rest of this run) instead of blocking every row behind it."""
    qs = Credential.objects.filter(status=Credential.Status.ACTIVE, expires_at__lte=now).order_by("expires_at")
    if skip:
        qs = qs.exclude(jti__in=skip)
    jtis = list(qs.values_list("jti", flat=True)[:limit])
    changed = 0
    for jti in jtis:
        try:
            with transaction.atomic():
                changed += _expire_credential_chunk(now=now, limit=1, skip=set(), actor=actor, only=jti)[0]
        except Exception as exc:
            if _fatal(exc):
                raise
            log.exception("expire_overdue_credentials: credential %s could not be expired; skipped", jti)
            skip.add(jti)
    return changed, len(jtis) == limit


# --- envelopes -----------------------------------------------------------------------------------


def _each(ids, fn, *, what: str) -> int:
    """Call ``fn(id)`` for each id; count the Trues; log and skip a row that raises."""
    changed = 0
    for pk in ids:
        try:
            if fn(pk):
                changed += 1
        except Exception as exc:
            if _fatal(exc):
                raise
            log.exception("%s: %s failed; skipped", what, pk)
    return changed


def expire_overdue_envelopes(*, now: datetime | None = None, limit: int = 1000) -> int:
    """approved/active envelopes past ``expires_at`` → expired; their credentials are revoked."""
    now = now or timezone.now()
    ids = list(
        TaskEnvelope.objects.filter(state__in=TaskEnvelope.LIVE_STATES, expires_at__lte=now)  # env_live_exp_idx
        .order_by("expires_at")
        .values_list("id", flat=True)[:limit]
    )
    # expire_envelope locks the row and re-checks state and time, so a concurrent sweep or a
    # person ending the envelope first makes it a no-op (False), never a second event.
    changed = _each(ids, lambda pk: lifecycle.expire_envelope(envelope_id=pk, now=now), what="expire_overdue_envelopes")
    log.info("expire_overdue_envelopes: %d envelope(s) expired", changed)
    return changed


def expire_pending_requests(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Pending envelopes nobody decided within the policy's limit → expired (env_pending_idx)."""
    changed = lifecycle.expire_pending_requests(now=now, limit=limit)
    log.info("expire_pending_requests: %d pending request(s) expired", changed)
    return changed


# --- stale sessions ------------------------------------------------------------------------------


def flag_stale_sessions(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Flag instances holding live credentials with no activity for the policy's idle limit, and
    active envelopes whose instance stopped acting; clear both flags when activity resumes.
    With the policy's ``pause_stale_instances`` on, a newly stale instance is also paused.
    Returns how many flags were set or cleared."""
    now = now or timezone.now()
    policy = active_policy()
    cutoff = now - timedelta(seconds=policy.idle_limit_seconds)
    idle = Q(last_seen_at__lte=cutoff) | Q(last_seen_at__isnull=True, created_at__lte=cutoff)
    live_credentials = Credential.objects.filter(
        instance=OuterRef("pk"), status=Credential.Status.ACTIVE, expires_at__gt=now
    )
    changed = 0

    stale_instances = list(
        Instance.objects.filter(idle, status=Instance.Status.ACTIVE, stale=False)  # instance_live_seen_idx
        .filter(Exists(live_credentials))
        .values_list("id", flat=True)[:limit]
    )
    pause = bool(getattr(policy, "pause_stale_instances", False))
    changed += _each(
        stale_instances, lambda pk: _flag_instance(pk, now=now, cutoff=cutoff, pause=pause), what="flag_stale_sessions"
    )

    resumed = list(
        Instance.objects.filter(stale=True, last_seen_at__gt=F("stale_since")).values_list("id", flat=True)[:limit]
    )
    changed += _each(resumed, lambda pk: _clear_instance(pk, now=now), what="flag_stale_sessions")

    idle_instance = Instance.objects.filter(Q(pk=OuterRef("instance_id")) & idle)
    stale_envelopes = list(
        TaskEnvelope.objects.filter(state=TaskEnvelope.State.ACTIVE, stale=False)
        .filter(Exists(idle_instance))
        .values_list("id", flat=True)[:limit]
    )
    changed += _each(
        stale_envelopes, lambda pk: _flag_envelope(pk, cutoff=cutoff, stale=True), what="flag_stale_sessions"
    )
    woken_envelopes = list(
        TaskEnvelope.objects.filter(
            stale=True, state=TaskEnvelope.State.ACTIVE, instance__last_seen_at__gt=cutoff
        ).values_list("id", flat=True)[:limit]
    )
    changed += _each(
        woken_envelopes, lambda pk: _flag_envelope(pk, cutoff=cutoff, stale=False), what="flag_stale_sessions"
    )
    log.info("flag_stale_sessions: %d flag(s) set or cleared", changed)
    return changed


def _flag_instance(pk, *, now, cutoff, pause: bool) -> bool:
    with transaction.atomic():
        instance = Instance.objects.select_for_update().select_related("agent").filter(pk=pk).first()
        if instance is None or instance.stale or instance.status != Instance.Status.ACTIVE:
            return False
        last = instance.last_seen_at or instance.created_at
        if last > cutoff:
            return False  # it acted since we looked
        instance.stale = True
        instance.stale_since = now
        instance.save(update_fields=["stale", "stale_since"])
        audit.record(
            "instance.flagged_stale",
            actor=audit.Actor.scheduler("flag-stale-sessions"),
            target=instance,
            before={"stale": False},
            after={"stale": True, "last_seen_at": instance.last_seen_at},
            reason=f"no activity for {int((now - last).total_seconds())} s",
        )
    if pause:
        lifecycle.pause_instance(
            instance=instance,
            actor=audit.Actor.of_policy("pause-stale-instances"),
            reason="stale session: no activity for the policy's idle limit",
        )
    return True


def _clear_instance(pk, *, now) -> bool:
    with transaction.atomic():
        instance = Instance.objects.select_for_update().select_related("agent").filter(pk=pk).first()
        if instance is None or not instance.stale or instance.stale_since is None:
            return False
        if instance.last_seen_at is None or instance.last_seen_at <= instance.stale_since:
            return False
        since = instance.stale_since
        instance.stale = False
        instance.stale_since = None
        instance.save(update_fields=["stale", "stale_since"])
        audit.record(
            "instance.stale_cleared",
            actor=audit.Actor.scheduler("flag-stale-sessions"),
            target=instance,
            before={"stale": True, "stale_since": since},
            after={"stale": False, "last_seen_at": instance.last_seen_at},
            reason="activity resumed",
        )
    return True


def _flag_envelope(pk, *, cutoff, stale: bool) -> bool:
    with transaction.atomic():
        envelope = TaskEnvelope.objects.select_for_update().select_related("instance").filter(pk=pk).first()
        if envelope is None or envelope.stale == stale or envelope.state != TaskEnvelope.State.ACTIVE:
            return False
        last = envelope.instance.last_seen_at or envelope.instance.created_at
        if (last <= cutoff) != stale:
            return False  # the instance's activity changed since we looked
        envelope.stale = stale
        envelope.save(update_fields=["stale"])
        verb = "envelope.flagged_stale" if stale else "envelope.stale_cleared"
        audit.record(
            verb,
            actor=audit.Actor.scheduler("flag-stale-sessions"),
            target=envelope,
            before={"stale": not stale},
            after={"stale": stale},
            reason="its instance stopped acting" if stale else "its instance acts again",
        )
    return True


# --- signing keys --------------------------------------------------------------------------------


def rotate_signing_keys() -> int:
    """Publish a new signing key on schedule; it starts signing once verifiers had a refresh hint
    to fetch it (``activate_published_keys``), and the old one keeps verifying until it drains."""
    key = keys.rotate_signing_key(actor=audit.Actor.scheduler("rotate-signing-keys"))
    log.info("rotate_signing_keys: published %s (%s)", key.kid, key.status)
    return 1


def activate_published_keys(*, now: datetime | None = None) -> int:
    """Let the newest published key sign once it has been in the JWKS for a refresh hint."""
    changed = keys.activate_due_keys(actor=audit.Actor.scheduler("activate-published-keys"), now=now)
    log.info("activate_published_keys: %d key(s) activated", changed)
    return changed


def retire_drained_keys(*, now: datetime | None = None) -> int:
    """Retire keys that no longer sign and whose last token has expired."""
    changed = keys.retire_drained_keys(actor=audit.Actor.scheduler("retire-drained-keys"), now=now)
    log.info("retire_drained_keys: %d key(s) retired", changed)
    return changed
