"""The hash-chained audit trail: one head per chain, append-only events."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


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
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
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

    class Meta:
        db_table = "console_auditevent"  # created under the console app; the table keeps its name
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["chain", "seq"], name="audit_chain_seq_unique")]
        indexes = [
            # The audit list's filters: by agent for owners, by verb, by target, by time.
            models.Index(fields=["agent_id", "-id"], name="audit_agent_idx"),
            models.Index(fields=["verb", "-id"], name="audit_verb_idx"),
            models.Index(fields=["target_type", "target_id"], name="audit_target_idx"),
            models.Index(fields=["at"], name="audit_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.verb} {self.target_type}:{self.target_id} by {self.actor}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not kwargs.pop("_audit_append", False):
            raise RuntimeError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise RuntimeError("audit events are append-only")
