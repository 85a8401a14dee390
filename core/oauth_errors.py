"""Every OAuth error in one place: the RFC error codes and the exceptions that carry them.

The token, introspection and revocation endpoints answer ``{"error": <code>,
"error_description": <text>}`` (RFC 6749 §5.2, RFC 7009, RFC 8693); the decision API answers a
rejected credential with its reason code (``token_invalid``, ``token_expired``).
"""

from __future__ import annotations

# RFC 6749 §5.2 and RFC 8693 §2.2.2
INVALID_REQUEST = "invalid_request"
INVALID_CLIENT = "invalid_client"
INVALID_GRANT = "invalid_grant"
UNAUTHORIZED_CLIENT = "unauthorized_client"
UNSUPPORTED_GRANT_TYPE = "unsupported_grant_type"
INVALID_SCOPE = "invalid_scope"
INVALID_TARGET = "invalid_target"
ACCESS_DENIED = "access_denied"
# RFC 7009 §2.2.1
UNSUPPORTED_TOKEN_TYPE = "unsupported_token_type"
# RFC 6750 §3.1 (a bad Bearer token at introspection)
INVALID_TOKEN = "invalid_token"
# RFC 8628 §3.5, registered for token endpoint responses: this client asks too often (sent with 429
# and Retry-After). temporarily_unavailable is registered for the authorization endpoint only.
SLOW_DOWN = "slow_down"


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400, *, headers: dict | None = None):
        super().__init__(description)
        self.error, self.description, self.status = error, description, status
        self.headers = headers or {}  # e.g. Retry_After (rendered Retry-After)


# A grant the issuance rules refuse (the endpoint answers ``error`` with ``description``).
class GrantRefused(Exception):
    def __init__(self, error: str, description: str):
        super().__init__(description)
        self.error = error
        self.description = description


class AssertionRejected(Exception):
    """The assertion does not prove who it claims (always ``invalid_client`` at the endpoint)."""


class WorkloadTokenRejected(Exception):
    """A workload token that does not prove anything. ``error`` is the RFC 6749 code."""

    error = INVALID_CLIENT

    def __init__(self, description: str):
        super().__init__(description)
        self.description = description


class TokenRejected(Exception):
    """``reason`` is ``token_invalid`` or ``token_expired`` (the decision API's reason codes)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
