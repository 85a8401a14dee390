"""Task envelopes (the unit of authority), approvals and the activity record."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from core.errors import InvalidTransition
from identities.permissions import visible_by


def default_audiences() -> list[str]:
    """An envelope that names no audience is for the deployment's default audience only."""
    return [settings.MANDATE_DEFAULT_AUDIENCE]


class TaskEnvelope(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        ACTIVE = "active", "Active"
        COMPLETED = "completed", "Completed"
        EXPIRED = "expired", "Expired"
        REVOKED = "revoked", "Revoked"
        DENIED = "denied", "Denied"
        SUPERSEDED = "superseded", "Superseded"

    class Risk(models.TextChoices):
        LOW = "low", "Low"
        MEDIUM = "medium", "Medium"
        HIGH = "high", "High"

    # Credentials may be minted only in these states; leaving them revokes every credential.
    LIVE_STATES = (State.APPROVED, State.ACTIVE)
    OPEN_STATES = (State.PENDING, State.APPROVED, State.ACTIVE)
    TERMINAL_STATES = (State.COMPLETED, State.EXPIRED, State.REVOKED, State.DENIED, State.SUPERSEDED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # The two keys are indexed through env_instance_state_idx and env_agent_state_idx, which lead with them.
    instance = models.ForeignKey(
        "identities.Instance", on_delete=models.PROTECT, related_name="envelopes", db_index=False
    )
    # Denormalised from the instance so owner scoping and per-agent lists need no join.
    agent = models.ForeignKey("identities.Agent", on_delete=models.PROTECT, related_name="envelopes", db_index=False)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    risk = models.CharField(max_length=8, choices=Risk.choices, default=Risk.HIGH)
    intent = models.TextField(max_length=4000)
    scopes = models.JSONField(default=list)
    resources = models.JSONField(default=list)
    # Who its credentials may be for (their aud): requested and approved with the envelope.
    audiences = models.JSONField(default=default_audiences)
    duration_seconds = models.PositiveIntegerField()
    max_actions = models.PositiveIntegerField()
    actions_used = models.PositiveIntegerField(default=0)
    may_delegate = models.BooleanField(default=False)
    delegation_depth = models.PositiveSmallIntegerField(default=0)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="requested_envelopes"
    )
    required_approvals = models.PositiveSmallIntegerField(default=1)
    policy_version = models.CharField(max_length=64, blank=True)
    # The named policy rule that approved it without a person, if any.
    auto_approved_by = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    approved_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=500, blank=True)
    supersedes = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="superseded_by"
    )
    parent_envelope = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="child_envelopes"
    )
    # Drift: calls or reports outside the envelope.
    drift_count = models.PositiveIntegerField(default=0)
    last_drift_at = models.DateTimeField(null=True, blank=True)
    # Set by the stale-session sweep: still live though its instance stopped acting.
    stale = models.BooleanField(default=False)

    audit_type = "envelope"

    objects = visible_by("agent__owner")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["agent", "state", "-created_at"], name="env_agent_state_idx"),
            models.Index(fields=["instance", "state"], name="env_instance_state_idx"),
            models.Index(fields=["state", "-created_at"], name="env_state_created_idx"),
            # The envelope-expiry sweep: live envelopes by expiry.
            models.Index(fields=["expires_at"], name="env_live_exp_idx", condition=Q(state__in=["approved", "active"])),
            # The pending-expiry sweep and the approval queue (oldest first).
            models.Index(fields=["created_at"], name="env_pending_idx", condition=Q(state="pending")),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.state})"

    @property
    def audit_label(self) -> str:
        return f"{self.intent[:60]}"

    def audit_agent_id(self):
        return self.agent_id

    @property
    def is_live(self) -> bool:
        return self.state in self.LIVE_STATES and (self.expires_at is None or self.expires_at > timezone.now())

    @property
    def remaining_actions(self) -> int:
        return max(self.max_actions - self.actions_used, 0)

    @property
    def seconds_left(self) -> int | None:
        if self.expires_at is None:
            return None
        return max(int((self.expires_at - timezone.now()).total_seconds()), 0)

    def snapshot(self) -> dict:
        return {
            "state": self.state,
            "risk": self.risk,
            "scopes": list(self.scopes),
            "resources": list(self.resources),
            "audiences": list(self.audiences),
            "duration_seconds": self.duration_seconds,
            "max_actions": self.max_actions,
            "actions_used": self.actions_used,
            "expires_at": self.expires_at,
            "end_reason": self.end_reason,
        }

    def set_state(self, new: str, *, allowed_from: tuple[str, ...], extra_fields: tuple[str, ...] = ()) -> str:
        """Move to ``new`` from one of ``allowed_from``; return the old state. Caller holds the lock."""
        if self.state not in allowed_from:
            raise InvalidTransition(f"envelope is {self.state}; cannot become {new}")
        old = self.state
        self.state = new
        if new in self.TERMINAL_STATES and self.ended_at is None:
            self.ended_at = timezone.now()
            extra_fields = (*extra_fields, "ended_at")
        self.save(update_fields=["state", *extra_fields])
        return old


class Approval(models.Model):
    class Decision(models.TextChoices):
        APPROVE = "approve", "Approve"
        DENY = "deny", "Deny"

    id = models.BigAutoField(primary_key=True)
    envelope = models.ForeignKey(
        TaskEnvelope, on_delete=models.CASCADE, related_name="approvals", db_index=False
    )  # indexed through approval_once_per_admin, which leads with it
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="approvals")
    decision = models.CharField(max_length=8, choices=Decision.choices)
    comment = models.TextField(blank=True, max_length=2000)
    at = models.DateTimeField(default=timezone.now)

    objects = visible_by("envelope__agent__owner")

    class Meta:
        ordering = ["at"]
        constraints = [
            # One admin counts once toward a quorum, even when two requests race.
            models.UniqueConstraint(fields=["envelope", "by"], name="approval_once_per_admin"),
        ]

    def __str__(self) -> str:
        return f"{self.decision} by {self.by_id} on {self.envelope_id}"


class ActivityEvent(models.Model):
    """The high-volume runtime record: decisions, tool calls, secret accesses, escalations."""

    class Kind(models.TextChoices):
        DECISION = "decision", "Decision"
        TOOL_CALL = "tool_call", "Tool call"
        SECRET_ACCESS = "secret_access", "Secret access"
        PRIVILEGE_ESCALATION = "privilege_escalation", "Privilege escalation"

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=24, choices=Kind.choices)
    # Every index is rewritten by every recorded decision: the keys are indexed only through the
    # (key, -id) indexes below, which lead with them. The keys are not foreign-key constraints in
    # the database: each would cost every recorded row a lookup and a key-share lock on the agent,
    # instance and envelope at commit (a third of a batch's insert). Every writer takes the ids from
    # rows it just read (the credential, its instance and envelope), those rows are never deleted
    # by Mandate, and PROTECT still refuses the ORM's delete of any row an event names
    # (tests/tasks/test_activity_references.py).
    agent = models.ForeignKey(
        "identities.Agent", on_delete=models.PROTECT, related_name="+", null=True, db_index=False, db_constraint=False
    )
    instance = models.ForeignKey(
        "identities.Instance",
        on_delete=models.PROTECT,
        related_name="+",
        null=True,
        db_index=False,
        db_constraint=False,
    )
    envelope = models.ForeignKey(
        TaskEnvelope, on_delete=models.PROTECT, related_name="+", null=True, db_index=False, db_constraint=False
    )
    jti = models.CharField(max_length=64, blank=True)
    scope = models.CharField(max_length=130, blank=True)
    resource = models.CharField(max_length=512, blank=True)
    allow = models.BooleanField(null=True)
    reason = models.CharField(max_length=32, blank=True)
    outcome = models.CharField(max_length=64, blank=True)
    drift = models.BooleanField(default=False)
    policy_version = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField(default=timezone.now)
    recorded_at = models.DateTimeField(default=timezone.now)
    reported_by = models.CharField(max_length=255, blank=True)

    objects = visible_by("agent__owner")

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["agent", "-id"], name="activity_agent_idx"),
            models.Index(fields=["instance", "-id"], name="activity_instance_idx"),
            models.Index(fields=["envelope", "-id"], name="activity_envelope_idx"),
            # The console lists activity newest first by when it happened, id breaking ties,
            # keyset-paged: these serve the whole list and one agent's.
            models.Index(fields=["-occurred_at", "-id"], name="activity_when_idx"),
            models.Index(fields=["agent", "-occurred_at", "-id"], name="activity_agent_when_idx"),
            # Drift is rare (a call outside its envelope): the console's dashboard and "drift only"
            # filter read it newest first without scanning the allowed traffic around it.
            models.Index(fields=["-id"], name="activity_drift_idx", condition=Q(drift=True)),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.scope} {self.resource}"


# The notification outbox: The notification outbox: a row written in the same transaction as the change it announces.
# The broker may be down when an envelope is requested or decided; the row is not. It is published
# after commit (off the request's thread), re-published by the relay until a worker has delivered it,
# and delivered at most once per row: the worker claims the row before sending (see tasks/outbox.py).
class OutboxMessage(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=32)  # "pending" or "decided" (tasks/mail.py)
    envelope_id = models.UUIDField()
    created_at = models.DateTimeField(default=timezone.now)
    # Last time it was handed to the broker (None: never yet); the relay re-publishes stale ones.
    published_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [
            models.Index(fields=["created_at"], name="outbox_undelivered_idx", condition=Q(delivered_at__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.envelope_id}"
