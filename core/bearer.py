"""``Authorization: Bearer <value>``, parsed in one place for every Bearer authenticator."""

from __future__ import annotations

from rest_framework import authentication, exceptions


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
