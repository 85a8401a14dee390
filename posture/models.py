"""Posture records: standing exceptions (the honest register of long-lived vendor tokens) and
background evidence exports.

Statuses change only through ``posture/standing_exceptions.py`` and ``posture/export.py``.
"""

from __future__ import annotations

import hashlib
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from core.errors import InvalidTransition
from identities.permissions import visible_by

# A standing exception may never be granted for longer than this (a hard expiry of at most 90 days).
MAX_STANDING_EXCEPTION_DAYS = 90


class StandingException(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending approval"
        APPROVED = "approved", "Approved"
        EXPIRED = "expired", "Expired"
        RETIRED = "retired", "Retired"

    OPEN_STATES = (Status.PENDING, Status.APPROVED)
    LIVE_STATES = (Status.APPROVED,)
    TERMINAL_STATES = (Status.EXPIRED, Status.RETIRED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    vendor = models.CharField(max_length=200)
    justification = models.TextField(max_length=4000)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="standing_exceptions", db_index=False
    )  # indexed through exc_owner_idx, which leads with it
    agent = models.ForeignKey(
        "identities.Agent", null=True, blank=True, on_delete=models.PROTECT, related_name="standing_exceptions"
    )
    scopes = models.JSONField(default=list)
    compensating_controls = models.TextField(max_length=4000)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    # Asked for at request; the hard expiry is set at approval (the clock starts then, as for envelopes).
    duration_days = models.PositiveSmallIntegerField()
    recertify_every_days = models.PositiveSmallIntegerField(default=30)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    recertify_by = models.DateField(null=True, blank=True)
    last_recertified_at = models.DateTimeField(null=True, blank=True)
    # The day the last re-certification reminder went out, so a sweep run twice mails once.
    reminded_on = models.DateField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=500, blank=True)
    renews = models.OneToOneField("self", null=True, blank=True, on_delete=models.PROTECT, related_name="renewed_by")
    # A secret Mandate issued for the vendor: shown once at request, only its SHA-256 digest is kept.
    secret_prefix = models.CharField(max_length=16, blank=True)
    secret_digest = models.CharField(max_length=64, blank=True)

    audit_type = "standing_exception"

    objects = visible_by("owner")

    class Meta:
        db_table = "tasks_standingexception"  # created under the tasks app; the table keeps its name
        ordering = ["-created_at"]
        indexes = [
            # expire_due_standing_exceptions: approved rows by hard expiry.
            models.Index(fields=["expires_at"], name="exc_live_exp_idx", condition=Q(status="approved")),
            # remind_recertifications: approved rows by re-certification date.
            models.Index(fields=["recertify_by"], name="exc_live_recert_idx", condition=Q(status="approved")),
            models.Index(fields=["owner", "status"], name="exc_owner_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["secret_digest"], condition=~Q(secret_digest=""), name="exc_secret_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.vendor} ({self.status})"

    @property
    def audit_label(self) -> str:
        return self.vendor[:200]

    def audit_agent_id(self):
        return self.agent_id

    @staticmethod
    def digest_of(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    @property
    def has_secret(self) -> bool:
        return bool(self.secret_digest)

    @property
    def recertification_overdue(self) -> bool:
        return (
            self.status == self.Status.APPROVED
            and self.recertify_by is not None
            and self.recertify_by < timezone.now().date()
        )

    def snapshot(self) -> dict:
        return {
            "status": self.status,
            "vendor": self.vendor,
            "scopes": list(self.scopes),
            "duration_days": self.duration_days,
            "expires_at": self.expires_at,
            "recertify_by": self.recertify_by,
            "agent": str(self.agent_id) if self.agent_id else None,
            "owner": self.owner.get_username() if self.owner_id else None,
            "has_secret": self.has_secret,
        }

    def set_status(self, new: str, *, allowed_from: tuple[str, ...], extra_fields: tuple[str, ...] = ()) -> str:
        """Move to ``new`` from one of ``allowed_from``; return the old status. Caller holds the lock."""
        if self.status not in allowed_from:
            raise InvalidTransition(f"exception is {self.status}; cannot become {new}")
        old = self.status
        self.status = new
        if new in self.TERMINAL_STATES and self.ended_at is None:
            self.ended_at = timezone.now()
            extra_fields = (*extra_fields, "ended_at")
        self.save(update_fields=["status", *extra_fields])
        return old


class ExportJob(models.Model):
    """An evidence export run by the worker into the data folder, with its progress."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    class Kind(models.TextChoices):
        AUDIT = "audit", "Audit trail"
        ACTIVITY = "activity", "Activity"

    class Format(models.TextChoices):
        JSONL = "jsonl", "JSON Lines"
        CSV = "csv", "CSV"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )  # indexed through export_user_idx, which leads with it
    kind = models.CharField(max_length=16, choices=Kind.choices)
    format = models.CharField(max_length=8, choices=Format.choices)
    since = models.DateTimeField(null=True, blank=True)
    until = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveBigIntegerField(default=0)
    done = models.PositiveBigIntegerField(default=0)
    file_name = models.CharField(max_length=200, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    audit_chain = models.JSONField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "tasks_exportjob"  # created under the tasks app; the table keeps its name
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["requested_by", "-created_at"], name="export_user_idx")]

    def __str__(self) -> str:
        return f"{self.kind}.{self.format} ({self.status})"

    @property
    def percent(self) -> int:
        if self.status == self.Status.DONE:
            return 100
        if not self.total:
            return 0
        return min(int(self.done * 100 / self.total), 99)

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)
