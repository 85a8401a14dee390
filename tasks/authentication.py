"""``Authorization: Bearer <credential>`` for agent instances acting with their own credential.

The credential is verified (signature by one of our published keys, ``exp``) and its row must be
live: not revoked, instance and envelope still live. The request's user becomes an
``AgentPrincipal`` — never a Django user, never holding a role — carrying the instance, envelope and
credential, so views attribute what the agent does to exactly that instance and envelope.
API tokens (``mdt_…``) are left to ``accounts.authentication.ApiTokenAuthentication``.
"""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from accounts.models import TOKEN_PREFIX
from core.bearer import bearer_value
from core.oauth_errors import TokenRejected
from identities.models import Credential, Instance
from tasks.decisions import load_credential, verify_token_cached


class AgentPrincipal(AnonymousUser):
    """An authenticated agent instance: no password, no groups, no roles."""

    def __init__(self, credential: Credential):
        super().__init__()
        self.credential = credential
        self.instance = credential.instance
        self.envelope = credential.envelope
        self.agent = credential.instance.agent
        self._mandate_roles = frozenset()

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    is_active = True

    def get_username(self) -> str:
        return self.instance.spiffe_id

    def __str__(self) -> str:
        return self.get_username()


class AgentCredentialAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        token = bearer_value(request)
        if token is None or token.startswith(TOKEN_PREFIX):
            return None  # no Bearer header, or an API token for ApiTokenAuthentication
        try:
            verified = verify_token_cached(token)
        except TokenRejected as rejected:
            raise exceptions.AuthenticationFailed(rejected.detail) from None
        credential = load_credential(verified.jti)
        if (
            credential is None
            or str(credential.envelope_id) != verified.envelope_id
            or credential.instance.spiffe_id != verified.sub
        ):
            raise exceptions.AuthenticationFailed("no such credential")
        if credential.status != Credential.Status.ACTIVE or credential.expires_at <= timezone.now():
            raise exceptions.AuthenticationFailed(f"the credential is {credential.status}")
        if credential.instance.status != Instance.Status.ACTIVE:
            raise exceptions.AuthenticationFailed(f"the instance is {credential.instance.status}")
        return AgentPrincipal(credential), credential

    def authenticate_header(self, request):
        return self.keyword


class AgentCredentialScheme(OpenApiAuthenticationExtension):
    target_class = "tasks.authentication.AgentCredentialAuthentication"
    name = "agentCredential"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "The agent instance's own access token from /oauth/token.",
        }
