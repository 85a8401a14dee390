"""Agents, their instances (each with its own workload identity), signing keys and credentials.

States change only through the transition functions in ``identities/services.py`` (and the
single-row methods here that they call); nothing else writes a ``status`` field.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from core.errors import InvalidTransition
from identities.permissions import visible_by


class Agent(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        RETIRED = "retired", "Retired"

    LIVE_STATES = (Status.ACTIVE, Status.PAUSED)
    TERMINAL_STATES = (Status.RETIRED,)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slug = models.SlugField(max_length=63, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, max_length=4000)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="agents", db_index=False
    )  # indexed through agent_owner_idx, which leads with it
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    # The scopes this agent may ever be granted: a static guardrail, never the authorisation itself.
    ceiling = models.JSONField(default=list)
    max_envelope_seconds = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    orphaned = models.BooleanField(default=False)
    # Who paused it and why, while it is paused. A pause by an identity admin or a policy rule is
    # locked: only an identity admin lifts it (see ``identities.permissions.require_can_resume``).
    paused_by = models.CharField(max_length=200, blank=True)
    pause_reason = models.CharField(max_length=500, blank=True)
    pause_locked = models.BooleanField(default=False)

    audit_type = "agent"

    objects = visible_by("owner")

    class Meta:
        ordering = ["slug"]
        indexes = [models.Index(fields=["owner", "slug"], name="agent_owner_idx")]

    def __str__(self) -> str:
        return self.slug

    @property
    def audit_label(self) -> str:
        return self.slug

    def audit_agent_id(self):
        return self.id

    def snapshot(self) -> dict:
        return {
            "status": self.status,
            "name": self.name,
            "ceiling": list(self.ceiling),
            "max_envelope_seconds": self.max_envelope_seconds,
            "owner": self.owner.get_username() if self.owner_id else None,
        }

    def set_status(self, new: str, *, allowed_from: tuple[str, ...], pause: PauseMark | None = None) -> str:
        """Move to ``new`` from one of ``allowed_from``; return the old status. Caller holds the lock.
        ``pause`` says who paused and whether it is a lock; any other move clears it."""
        if self.status not in allowed_from:
            raise InvalidTransition(f"agent {self.slug} is {self.status}; cannot become {new}")
        old = self.status
        self.status = new
        self.status_changed_at = timezone.now()
        set_pause_mark(self, pause if new == self.Status.PAUSED else None)
        self.save(update_fields=["status", "status_changed_at", *PAUSE_FIELDS])
        return old


class AgentChange(models.Model):
    """A wider ceiling or a longer longest envelope someone asked for an agent, waiting for an
    identity admin other than the requester (at most one pending per agent, by constraint).

    ``ceiling`` and ``max_envelope_seconds`` are the whole values to put in force on approval."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        DENIED = "denied", "Denied"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="changes")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    ceiling = models.JSONField(default=list)
    max_envelope_seconds = models.PositiveIntegerField()
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField(default=timezone.now)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    comment = models.CharField(max_length=1000, blank=True)
    # Approved by the requester themself through ``manage.py approve_own_change`` (one identity admin).
    break_glass = models.BooleanField(default=False)

    audit_type = "agent_change"

    objects = visible_by("agent__owner")

    class Meta:
        ordering = ["requested_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["agent"], condition=Q(state="pending"), name="agent_change_one_pending")
        ]
        indexes = [models.Index(fields=["requested_at"], name="agent_change_pending_idx", condition=Q(state="pending"))]

    def __str__(self) -> str:
        return f"{self.agent_id}: {self.state}"

    @property
    def audit_label(self) -> str:
        return str(self.id)

    def audit_agent_id(self):
        return self.agent_id


class Instance(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        RETIRED = "retired", "Retired"

    class Origin(models.TextChoices):
        REGISTERED = "registered", "Registered"
        CLONE = "clone", "Clone"
        SUBAGENT = "subagent", "Sub-agent"

    LIVE_STATES = (Status.ACTIVE, Status.PAUSED)
    TERMINAL_STATES = (Status.RETIRED,)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(
        Agent, on_delete=models.PROTECT, related_name="instances", db_index=False
    )  # indexed through instance_agent_status_idx, which leads with it
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    origin = models.CharField(max_length=16, choices=Origin.choices, default=Origin.REGISTERED)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    public_jwk = models.JSONField(null=True, blank=True)
    # RFC 7638 thumbprint of the public key: shown in the console, and one key is never two instances.
    key_thumbprint = models.CharField(max_length=64, blank=True)
    label = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status_changed_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    # Set by the stale-session sweep, cleared when activity resumes.
    stale = models.BooleanField(default=False)
    stale_since = models.DateTimeField(null=True, blank=True)
    # True when this instance was paused because its agent was; resuming the agent resumes it.
    paused_with_agent = models.BooleanField(default=False)
    # Who paused it and why, while it is paused. A pause by an identity admin or a policy rule is
    # locked: only an identity admin lifts it (see ``identities.permissions.require_can_resume``).
    paused_by = models.CharField(max_length=200, blank=True)
    pause_reason = models.CharField(max_length=500, blank=True)
    pause_locked = models.BooleanField(default=False)
    # Workload attestation by a trusted OIDC issuer (instead of, or beside, a registered key).
    attested_issuer = models.CharField(max_length=500, blank=True)
    attested_subject = models.CharField(max_length=500, blank=True)

    audit_type = "instance"

    objects = visible_by("agent__owner")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["agent", "status"], name="instance_agent_status_idx"),
            # Used by the stale-session sweep: live instances by when they were last seen.
            models.Index(fields=["last_seen_at"], name="instance_live_seen_idx", condition=Q(status="active")),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["key_thumbprint"],
                condition=~Q(key_thumbprint=""),
                name="instance_key_unique",
            )
        ]

    def __str__(self) -> str:
        return self.spiffe_id

    @property
    def spiffe_id(self) -> str:
        return spiffe_id_for(self.agent.slug, self.id)

    @property
    def audit_label(self) -> str:
        return self.spiffe_id

    def audit_agent_id(self):
        return self.agent_id

    def snapshot(self) -> dict:
        return {"status": self.status, "label": self.label, "origin": self.origin}

    def set_status(
        self, new: str, *, allowed_from: tuple[str, ...], with_agent: bool = False, pause: PauseMark | None = None
    ) -> str:
        if self.status not in allowed_from:
            raise InvalidTransition(f"instance {self.id} is {self.status}; cannot become {new}")
        old = self.status
        self.status = new
        self.status_changed_at = timezone.now()
        self.paused_with_agent = with_agent and new == self.Status.PAUSED
        set_pause_mark(self, pause if new == self.Status.PAUSED else None)
        self.save(update_fields=["status", "status_changed_at", "paused_with_agent", *PAUSE_FIELDS])
        return old


@dataclass(frozen=True)
class PauseMark:
    """Who paused an agent or instance, why, and whether it is a lock only identity admins lift."""

    by: str
    reason: str
    locked: bool

    def as_dict(self) -> dict:
        return {"by": self.by, "reason": self.reason, "locked": self.locked}


PAUSE_FIELDS = ("paused_by", "pause_reason", "pause_locked")


def set_pause_mark(row: Agent | Instance, mark: PauseMark | None) -> None:
    row.paused_by = mark.by[:200] if mark else ""
    row.pause_reason = mark.reason[:500] if mark else ""
    row.pause_locked = mark.locked if mark else False


def pause_of(row: Agent | Instance) -> dict | None:
    """The pause as the API shows it: null unless paused."""
    if row.status != "paused":
        return None
    return PauseMark(row.paused_by, row.pause_reason, row.pause_locked).as_dict()


def spiffe_id_for(agent_slug: str, instance_id) -> str:
    return f"spiffe://{settings.MANDATE_TRUST_DOMAIN}/agent/{agent_slug}/instance/{instance_id}"


class SigningKey(models.Model):
    """A key that signs credentials. The private half is stored only encrypted (MultiFernet).

    ``published`` keys are in the JWKS but do not sign yet (so verifiers can fetch them first);
    ``active`` signs; ``retiring`` no longer signs but stays published until its last token expires;
    ``retired`` is gone from the JWKS.
    """

    class Status(models.TextChoices):
        PUBLISHED = "published", "Published (not yet signing)"
        ACTIVE = "active", "Active"
        RETIRING = "retiring", "Retiring"
        RETIRED = "retired", "Retired"

    PUBLISHED_STATES = (Status.PUBLISHED, Status.ACTIVE, Status.RETIRING)

    kid = models.CharField(primary_key=True, max_length=64)
    alg = models.CharField(max_length=8, default="ES256")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PUBLISHED)
    public_jwk = models.JSONField()
    private_key_encrypted = models.BinaryField()
    created_at = models.DateTimeField(default=timezone.now)
    activated_at = models.DateTimeField(null=True, blank=True)
    retiring_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    # The latest ``exp`` of any token this key signed; it may retire after that.
    last_token_expires_at = models.DateTimeField(null=True, blank=True)

    audit_type = "signing_key"

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.kid

    @property
    def audit_label(self) -> str:
        return self.kid


class Credential(models.Model):
    """A minted JWT-SVID, by ``jti``. The token itself is never stored."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        EXPIRED = "expired", "Expired"
        REVOKED = "revoked", "Revoked"

    LIVE_STATES = (Status.ACTIVE,)
    TERMINAL_STATES = (Status.EXPIRED, Status.REVOKED)

    jti = models.CharField(primary_key=True, max_length=64)
    # Every index here is rewritten when a credential expires or is revoked (the status change rules
    # out a HOT update), so the FK columns are indexed only through the composite indexes below.
    instance = models.ForeignKey(Instance, on_delete=models.PROTECT, related_name="credentials", db_index=False)
    envelope = models.ForeignKey(
        "tasks.TaskEnvelope", on_delete=models.PROTECT, related_name="credentials", db_index=False
    )
    scopes = models.JSONField(default=list)
    audience = models.CharField(max_length=500)
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoke_reason = models.CharField(max_length=500, blank=True)
    kid = models.CharField(max_length=64)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="delegated",
        to_field="jti",
        db_index=False,
    )
    # The chain of delegating instances' SPIFFE IDs, nearest first (the ``act`` claim).
    act_chain = models.JSONField(default=list, blank=True)

    audit_type = "credential"

    objects = visible_by("instance__agent__owner")

    class Meta:
        ordering = ["-issued_at"]
        indexes = [
            # The credential-expiry sweep: live rows by expiry, so it never scans expired history.
            models.Index(fields=["expires_at"], name="cred_live_exp_idx", condition=Q(status="active")),
            models.Index(fields=["envelope", "status"], name="cred_envelope_idx"),
            models.Index(fields=["instance", "status"], name="cred_instance_idx"),
            # The revocation cascade follows delegated children; most credentials have no parent.
            models.Index(fields=["parent"], name="cred_parent_idx", condition=Q(parent__isnull=False)),
        ]

    def __str__(self) -> str:
        return self.jti

    @property
    def audit_label(self) -> str:
        return self.jti

    def audit_agent_id(self):
        return self.instance.agent_id

    @property
    def is_live(self) -> bool:
        return self.status == self.Status.ACTIVE and self.expires_at > timezone.now()


class UsedAssertion(models.Model):
    """A client-assertion ``jti`` seen at the token endpoint, kept until the assertion's ``exp`` so a
    replay is refused by every web process (the primary key makes the check-and-insert atomic)."""

    key = models.CharField(primary_key=True, max_length=64)  # SHA-256 of issuer + jti
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return self.key


from identities.models_oidc import TrustedIssuer  # noqa: E402,F401
