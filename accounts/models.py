"""People's records: API tokens (``mdt_…``) for REST automation, console sign-in sessions, the
audiences a gateway serves, requests to make someone an identity admin, and accounts at the single
sign-on provider."""

from __future__ import annotations

import hashlib
import secrets
import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

TOKEN_PREFIX = "mdt_"


class ApiToken(models.Model):
    """A bearer token for a user's REST automation. Only a SHA-256 digest of the secret is kept."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    # The first characters of the secret, so a person can tell their tokens apart; not enough to use.
    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "console_apitoken"  # created under the console app; the table keeps its name
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def digest_of(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    @staticmethod
    def new_secret() -> str:
        return TOKEN_PREFIX + secrets.token_urlsafe(32)

    @property
    def is_usable(self) -> bool:
        return self.usable(self.revoked_at, self.expires_at, timezone.now())

    @staticmethod
    def usable(revoked_at, expires_at, now) -> bool:
        """Not revoked and not expired at ``now``: the one rule, for a model or a row read as values."""
        return revoked_at is None and (expires_at is None or expires_at > now)

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return "expired"
        return "active"


class SignInSession(models.Model):
    """One open console session of a person: how they signed in, so an identity admin can see it and
    end it ("sign out everywhere"), and so the provider's back-channel logout can find it."""

    class Method(models.TextChoices):
        PASSWORD = "password", "password"
        SSO = "sso", "single sign-on"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sign_in_sessions", db_index=False
    )  # indexed through signin_session_user, which leads with it
    session_key = models.CharField(max_length=40, unique=True)
    method = models.CharField(max_length=8, choices=Method.choices)
    # The provider's session id (the ID token's ``sid``), which a back-channel logout may name.
    sid = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # The people page lists each person's sessions; back-channel logout looks them up by sid.
        indexes = [models.Index(fields=["user", "created_at"], name="signin_session_user")]

    def __str__(self) -> str:
        return f"{self.user_id} {self.method} {self.created_at:%Y-%m-%d %H:%M}"


class GatewayAudience(models.Model):
    """One audience a gateway serves: it may ask for decisions on credentials minted for it (their
    ``aud``). A gateway that declares none serves the deployment's default audience."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="gateway_audiences", db_index=False
    )  # indexed through gateway_audience_unique, which leads with it
    audience = models.CharField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["user_id", "id"]
        constraints = [models.UniqueConstraint(fields=["user", "audience"], name="gateway_audience_unique")]

    def __str__(self) -> str:
        return self.audience


class AdminGrant(models.Model):
    """A request to make someone an identity admin. Widening who may approve is itself approved:
    by an identity admin other than the one who asked and other than the person concerned."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        DENIED = "denied", "Denied"

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="admin_grants")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField(default=timezone.now)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True)
    decided_at = models.DateTimeField(null=True)

    class Meta:
        constraints = [
            # At most one open request per person, even when two admins ask at once.
            models.UniqueConstraint(fields=["user"], condition=models.Q(state="pending"), name="admin_grant_one_open"),
        ]

    def __str__(self) -> str:
        return f"identity-admin for {self.user_id} ({self.state})"


class ExternalAccount(models.Model):
    """A person's account at the single sign-on provider, linked by (issuer, subject) — never by
    e-mail, which a provider may let people change."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="external_account")
    issuer = models.CharField(max_length=500)
    subject = models.CharField(max_length=255)
    # The roles the provider's claims granted at the last sign-in (the ones SSO manages).
    roles = models.JSONField(default=list)
    last_login_at = models.DateTimeField(null=True, blank=True)
    # Set when a sign-in was refused by the provider's claims and the account deactivated for it;
    # only such an account is reactivated when the provider lets the person in again.
    refused_at = models.DateTimeField(null=True, blank=True)
    # The provider's latest refresh token (MultiFernet-encrypted, like signing keys), with which the
    # person is re-validated on a cadence while they have open sessions or API tokens; "" when the
    # provider issues none (their sessions then simply end when the re-validation window closes).
    refresh_token_encrypted = models.TextField(blank=True, default="")
    # When the provider last confirmed this person (sign-in or refresh).
    validated_at = models.DateTimeField(null=True, blank=True)

    audit_type = "external_account"

    class Meta:
        db_table = "identities_externalaccount"  # created under the identities app; the table keeps its name
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="external_account_unique")]

    def __str__(self) -> str:
        return f"{self.subject}@{self.issuer}"
