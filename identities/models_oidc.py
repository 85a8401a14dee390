"""Trusted OpenID Connect workload issuers.

A ``TrustedIssuer`` is an outside token issuer (a Kubernetes cluster, GitHub Actions, a cloud's
workload identity) whose signed tokens Mandate accepts as proof that a workload is a given agent:
its ``rules`` bind a token's claims to exactly one agent. Written only through
``identities/oidc.py`` (create/update/disable, audited).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class TrustedIssuer(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100, unique=True)
    # Compared with the token's ``iss`` as an exact string (OpenID Connect Discovery §3).
    issuer = models.CharField(max_length=500, unique=True)
    # Where keys come from: a pinned JWK Set, else the discovery document (default
    # ``<issuer>/.well-known/openid-configuration``) and its ``jwks_uri``.
    discovery_url = models.CharField(max_length=500, blank=True)
    jwks = models.JSONField(null=True, blank=True)
    # The keys last fetched from the issuer (when no JWK Set is pinned): fetched when an admin saves
    # the issuer, refreshed by the ``refresh_issuer_keys`` job, refetched on the request path only
    # for an unknown kid, throttled (identities/oidc.py). ``keys_error`` says why the last fetch failed.
    fetched_jwks = models.JSONField(null=True, blank=True)
    keys_fetched_at = models.DateTimeField(null=True, blank=True)
    keys_error = models.CharField(max_length=300, blank=True, default="")
    audience = models.CharField(max_length=500)
    # [{"agent": "<slug>", "claims": {"sub": "system:serviceaccount:ns:*", ...}}, ...]
    rules = models.JSONField(default=list)
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    audit_type = "trusted_issuer"

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def audit_label(self) -> str:
        return f"{self.name} ({self.issuer})"

    @property
    def effective_discovery_url(self) -> str:
        return self.discovery_url or f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"

    def snapshot(self) -> dict:
        return {
            "name": self.name,
            "issuer": self.issuer,
            "discovery_url": self.discovery_url,
            "pinned_jwks_kids": sorted(k.get("kid", "") for k in (self.jwks or {}).get("keys", [])),
            "audience": self.audience,
            "rules": self.rules,
            "enabled": self.enabled,
        }
