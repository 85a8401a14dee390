"""The hash-chained audit trail: one head per chain, append-only events."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F
from django.db.models.functions import Upper
from django.utils import timezone

from core.indexes import PrefixIndex

# An audit row as it is published (exports, the offline verifier's input), in this order. The MAC
# and its key id are the server's own check and stay out of exports; the verifier reads them too.
PUBLISHED_FIELDS = (
    "id",
    "chain",
    "seq",
    "at",
    "actor_type",
    "actor",
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
)


class AuditChain(models.Model):
    """The head of one hash chain of audit events.

    Each agent's events form their own chain (key = ``agent:<uuid>``); events about no agent go to
    ``global``. Appending locks only the head of its chain, so work on different agents never waits
    on one global lock, and the head's ``length`` and ``last_hash`` make a deleted tail detectable.
    """

    key = models.CharField(primary_key=True, max_length=80)
    length = models.PositiveBigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default="0" * 64)

    class Meta:
        db_table = "console_auditchain"  # created under the console app; the table keeps its name

    def __str__(self) -> str:
        return f"{self.key} ({self.length})"


class AuditEvent(models.Model):
    """One append-only audit row. ``hash`` = SHA-256 over the previous hash and this row's content."""

    class ActorType(models.TextChoices):
        USER = "user", "User"
        INSTANCE = "instance", "Agent instance"
        POLICY = "policy", "Policy rule"
        SCHEDULER = "scheduler", "Scheduler"
        SYSTEM = "system", "System"

    id = models.BigAutoField(primary_key=True)
    chain = models.CharField(max_length=80)
    seq = models.PositiveBigIntegerField()
    at = models.DateTimeField(default=timezone.now)
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor = models.CharField(max_length=255)
    # Evidence is never rewritten: deleting a user leaves the id (and ``actor``, the name) as they
    # were, so no cascade and no database constraint (the trigger would refuse a SET NULL anyway).
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    verb = models.CharField(max_length=64)
    target_type = models.CharField(max_length=32)
    target_id = models.CharField(max_length=128)
    target_label = models.CharField(max_length=255, blank=True)
    # The agent the event concerns, for owners' scoped reads (no FK: the trail outlives rows).
    agent_id = models.UUIDField(null=True, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)
    # HMAC-SHA256 of ``hash`` under the audit key ``key_id`` (audit/keys.py): the key is not in
    # the database, so rows rewritten and re-hashed by someone holding only the database fail it.
    key_id = models.CharField(max_length=16, blank=True, default="")
    mac = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        db_table = "console_auditevent"  # created under the console app; the table keeps its name
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["chain", "seq"], name="audit_chain_seq_unique")]
        indexes = [
            # The audit list's filters: by agent for owners, by verb, by target, by time.
            models.Index(fields=["agent_id", "-id"], name="audit_agent_idx"),
            # By verb, exact ("envelope.approved") or by prefix ("envelope" → "envelope.%"), newest first.
            PrefixIndex(F("verb"), F("id").desc(), name="audit_verb_prefix_idx"),
            models.Index(fields=["target_type", "target_id"], name="audit_target_idx"),
            # Time with id breaking ties: the audit list's "When" sort in both directions and its
            # keyset cursor (and every "since" bound, which the old (at) index served).
            models.Index(fields=["at", "id"], name="audit_at_id_idx"),
            # The audit list's searches: actor by case-insensitive prefix, target by id prefix or
            # by case-insensitive label prefix (never a LIKE '%…%' over the whole trail).
            PrefixIndex(Upper("actor"), name="audit_actor_prefix_idx"),
            PrefixIndex(F("target_id"), name="audit_target_id_prefix_idx"),
            PrefixIndex(Upper("target_label"), name="audit_target_label_prefix_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.verb} {self.target_type}:{self.target_id} by {self.actor}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not kwargs.pop("_audit_append", False):
            raise RuntimeError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise RuntimeError("audit events are append-only")


class AuditJti(models.Model):
    """Which ``credentials.expired`` chunk event recorded a credential's expiry: the per-jti index
    that keeps one event per chunk per agent findable by jti (a side table works on every database)."""

    id = models.BigAutoField(primary_key=True)
    jti = models.CharField(max_length=64)
    event = models.ForeignKey(AuditEvent, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")

    class Meta:
        indexes = [models.Index(fields=["jti"], name="audit_jti_idx")]

    def __str__(self) -> str:
        return f"{self.jti} → {self.event_id}"


class AuditSigningKey(models.Model):
    """An Ed25519 key that signs audit checkpoints. It never signs credentials and is never in
    ``/.well-known/jwks.json``; its public half is at ``/.well-known/mandate-audit-keys.json``."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        RETIRED = "retired", "Retired"

    kid = models.CharField(primary_key=True, max_length=64)
    public_key = models.CharField(max_length=64, help_text="The raw public key, base64url.")
    private_key_encrypted = models.BinaryField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(default=timezone.now)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"audit key {self.kid} ({self.status})"


class AuditCheckpoint(models.Model):
    """A signed statement of where every chain that moved stood: ``body`` is the exact JSON that was
    signed (see audit/checkpoints.py); ``state`` folds every checkpoint so far, for the next
    one. Written to the database first, then to the external sink (``sunk_at``)."""

    seq = models.PositiveBigIntegerField(primary_key=True)
    at = models.DateTimeField()
    reason = models.CharField(max_length=32)
    body = models.TextField()
    digest = models.CharField(max_length=64)
    kid = models.CharField(max_length=64)
    signature = models.CharField(max_length=128)
    state = models.JSONField(default=dict)
    sunk_at = models.DateTimeField(null=True, blank=True)
    sink_error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-seq"]

    def __str__(self) -> str:
        return f"checkpoint #{self.seq} ({self.reason})"
