"""Evidence export: the audit trail and the activity record as JSON Lines or CSV for a time range.

Rows are read with ``.values(...).iterator(chunk_size=...)`` and written one at a time, so memory
stays flat however many rows a range holds. The same generator feeds the streamed HTTP response and
the background job (``run_export``) that writes to the data folder with progress.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.roles import can_read_all
from audit.checkpoints import Reason, write_checkpoint
from audit.models import PUBLISHED_FIELDS, AuditCheckpoint, AuditEvent
from audit.services import verify_chain
from audit.verify import checkpoint_record
from core.csv_export import SafeWriter
from core.csv_export import cell as csv_cell
from core.errors import DomainError, ValidationFailed
from posture.models import ExportJob
from posture.selectors import agents_in_scope
from tasks.models import ActivityEvent

logger = logging.getLogger(__name__)

CHUNK = 2000
PROGRESS_EVERY = 5000

AUDIT_FIELDS = PUBLISHED_FIELDS
ACTIVITY_FIELDS = (
    "id",
    "kind",
    "occurred_at",
    "recorded_at",
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
    "reported_by",
)
FIELDS = {ExportJob.Kind.AUDIT: AUDIT_FIELDS, ExportJob.Kind.ACTIVITY: ACTIVITY_FIELDS}
CONTENT_TYPES = {ExportJob.Format.JSONL: "application/x-ndjson", ExportJob.Format.CSV: "text/csv"}

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def clean_kind_and_format(kind, fmt) -> tuple[str, str]:
    if kind not in ExportJob.Kind.values:
        raise ValidationFailed("audit or activity", field="kind")
    if fmt not in ExportJob.Format.values:
        raise ValidationFailed("jsonl or csv", field="format")
    return kind, fmt


def rows_for(user, kind: str, *, since: datetime | None, until: datetime | None) -> QuerySet:
    """The rows the caller may export: admins and auditors everything, owners their agents' rows."""
    if kind == ExportJob.Kind.AUDIT:
        qs = AuditEvent.objects.all()
        time_field = "at"
        if not can_read_all(user):
            qs = qs.filter(agent_id__in=agents_in_scope(user).values("id"))
    else:
        qs = ActivityEvent.objects.all()
        time_field = "occurred_at"
        if not can_read_all(user):
            qs = qs.filter(agent__owner=user)
    if since is not None:
        qs = qs.filter(**{f"{time_field}__gte": since})
    if until is not None:
        qs = qs.filter(**{f"{time_field}__lt": until})
    return qs.order_by("id").values(*FIELDS[kind])


def _plain(value):
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value


def _cell(value) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return csv_cell(value)  # a cell a spreadsheet would run as a formula is neutralised


def render_rows(rows: QuerySet, kind: str, fmt: str) -> Iterator[str]:
    """One line of text per row (plus the CSV header); never holds more than one chunk of rows."""
    fields = FIELDS[kind]
    if fmt == ExportJob.Format.CSV:
        writer = SafeWriter()
        yield writer.line(fields)
        for row in rows.iterator(chunk_size=CHUNK):
            yield writer.line([_cell(row[f]) for f in fields])
    else:
        for row in rows.iterator(chunk_size=CHUNK):
            yield (
                json.dumps(
                    {"type": kind, **{f: _plain(row[f]) for f in fields}}, ensure_ascii=False, separators=(",", ":")
                )
                + "\n"
            )


def chain_status() -> dict:
    result = verify_chain()
    return {"ok": result.ok, "checked": result.checked, "first_bad": result.first_bad}


def covering_checkpoint() -> dict | None:
    """Sign where the chains stand before the rows are read (a new checkpoint only if a chain moved),
    so the export's rows are covered by a checkpoint an auditor can check offline; returned in the
    checkpoint file's line format."""
    write_checkpoint(reason=Reason.EXPORT)
    newest = AuditCheckpoint.objects.order_by("-seq").first()
    return checkpoint_record(newest) if newest else None


def stream(user, kind: str, fmt: str, *, since=None, until=None) -> Iterator[str]:
    """The streamed export. JSON Lines ends with a summary line carrying the audit chain's status
    (verified after the rows, in a second constant-memory pass)."""
    count = 0
    checkpoint = covering_checkpoint() if kind == ExportJob.Kind.AUDIT else None
    for line in render_rows(rows_for(user, kind, since=since, until=until), kind, fmt):
        count += 1
        yield line
    if fmt == ExportJob.Format.JSONL:
        yield (
            json.dumps(
                {
                    "type": "summary",
                    "kind": kind,
                    "rows": count,
                    "since": _plain(since),
                    "until": _plain(until),
                    "generated_at": timezone.now().isoformat(),
                    "audit_chain": chain_status(),
                    "audit_checkpoint": checkpoint,
                },
                separators=(",", ":"),
            )
            + "\n"
        )


# --- background exports --------------------------------------------------------------------------


def export_dir() -> Path:
    path = Path(settings.DATA_DIR) / "exports"
    path.mkdir(parents=True, exist_ok=True)
    return path


class TooManyExports(DomainError):
    """The person already has as many background exports queued or running as allowed."""

    status_code = 429
    code = "too_many_exports"


# A job still queued or running after this long was lost by its worker; it no longer holds a place.
STALE_AFTER = timedelta(days=1)


def start_export(*, user, kind, fmt, since=None, until=None) -> ExportJob:
    """Record the job and hand it to the worker once the row is committed. At most
    ``MANDATE_MAX_CONCURRENT_EXPORTS`` per person queued or running at once: each one holds a
    worker and writes a file the size of the range, so one person cannot fill the queue."""
    kind, fmt = clean_kind_and_format(kind, fmt)
    if since is not None and until is not None and since >= until:
        raise ValidationFailed("must be before until", field="since")
    limit = settings.MANDATE_MAX_CONCURRENT_EXPORTS
    with transaction.atomic():
        # Locking the person's row makes two starts by the same person take turns, so both cannot
        # count one below the limit (PostgreSQL; SQLite serialises write transactions anyway).
        get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True).first()
        in_flight = ExportJob.objects.filter(
            requested_by=user,
            status__in=(ExportJob.Status.QUEUED, ExportJob.Status.RUNNING),
            created_at__gt=timezone.now() - STALE_AFTER,
        ).count()
        if in_flight >= limit:
            raise TooManyExports(
                f"you already have {in_flight} exports queued or running, the most allowed at once "
                f"({limit} exports); wait for one to finish, then start this one"
            )
        job = ExportJob.objects.create(requested_by=user, kind=kind, format=fmt, since=since, until=until)
        transaction.on_commit(lambda: _enqueue(job.id))
    return job


def _enqueue(job_id) -> None:
    try:
        from posture.jobs import run_evidence_export

        run_evidence_export.delay(str(job_id))
    except Exception:  # the broker being down must not fail the request; the job stays queued
        logger.warning("could not enqueue evidence export %s", job_id, exc_info=True)


def run_export(job_id) -> ExportJob | None:
    """Write the export to the data folder, updating ``done`` every few thousand rows. Claims the job
    with a conditional update, so a redelivered task never runs it twice."""
    if not ExportJob.objects.filter(pk=job_id, status=ExportJob.Status.QUEUED).update(status=ExportJob.Status.RUNNING):
        return None
    job = ExportJob.objects.select_related("requested_by").get(pk=job_id)
    name = f"{job.kind}-{job.id}.{job.format}"
    path = export_dir() / name
    try:
        checkpoint = covering_checkpoint() if job.kind == ExportJob.Kind.AUDIT else None
        rows = rows_for(job.requested_by, job.kind, since=job.since, until=job.until)
        total = rows.count()
        ExportJob.objects.filter(pk=job.pk).update(total=total, file_name=name)
        digest = hashlib.sha256()
        done = 0
        with open(path, "w", encoding="utf-8", newline="") as out:
            for i, line in enumerate(render_rows(rows, job.kind, job.format)):
                out.write(line)
                digest.update(line.encode())
                if job.format == ExportJob.Format.JSONL or i > 0:
                    done += 1
                    if done % PROGRESS_EVERY == 0:
                        ExportJob.objects.filter(pk=job.pk).update(done=done)
        status = chain_status()
        manifest = {
            "export": str(job.id),
            "kind": job.kind,
            "format": job.format,
            "rows": done,
            "since": _plain(job.since),
            "until": _plain(job.until),
            "sha256": digest.hexdigest(),
            "requested_by": job.requested_by.get_username(),
            "audit_chain": status,
            # Verify offline: tools/verify_audit.py --rows <this export> --checkpoints <the sink's file>
            "audit_checkpoint": checkpoint,
            "generated_at": timezone.now().isoformat(),
        }
        (export_dir() / f"{name}.manifest.json").write_text(json.dumps(manifest, indent=2))
        ExportJob.objects.filter(pk=job.pk).update(
            status=ExportJob.Status.DONE,
            done=done,
            total=max(total, done),
            sha256=digest.hexdigest(),
            audit_chain=status,
            finished_at=timezone.now(),
        )
    except Exception as exc:
        logger.exception("evidence export %s failed", job_id)
        ExportJob.objects.filter(pk=job.pk).update(
            status=ExportJob.Status.FAILED, error=str(exc)[:500], finished_at=timezone.now()
        )
        path.unlink(missing_ok=True)
    return ExportJob.objects.get(pk=job.pk)


def jobs_for(user: User) -> QuerySet[ExportJob]:
    return ExportJob.objects.filter(requested_by=user)


def file_of(job: ExportJob) -> Path | None:
    if job.status != ExportJob.Status.DONE or not job.file_name:
        return None
    path = export_dir() / job.file_name
    return path if path.is_file() else None
