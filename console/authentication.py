"""``Authorization: Bearer <api token>`` for people and automation."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions

from console.models import TOKEN_PREFIX, ApiToken

# last_used_at is a hint for people, not an audit record: write it at most once a minute.
_LAST_USED_GRANULARITY = timedelta(seconds=60)


def bearer_value(request) -> str | None:
    """The value of ``Authorization: Bearer <value>``, None without such a header, and a 401 for
    a malformed one. Shared by every Bearer authenticator (API tokens, agent credentials)."""
    header = authentication.get_authorization_header(request).split()
    if not header or header[0].lower() != b"bearer":
        return None
    if len(header) != 2:
        raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <token>'")
    try:
        return header[1].decode("ascii")
    except UnicodeDecodeError:
        raise exceptions.AuthenticationFailed("invalid token") from None


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        secret = bearer_value(request)
        if secret is None:
            return None
        if not secret.startswith(TOKEN_PREFIX):
            # Not an API token (perhaps an agent credential): let another authenticator try.
            return None
        token = ApiToken.objects.select_related("user").filter(digest=ApiToken.digest_of(secret)).first()
        if token is None or not token.is_usable or not token.user.is_active:
            raise exceptions.AuthenticationFailed("invalid, expired or revoked token")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > _LAST_USED_GRANULARITY:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request):
        return self.keyword
