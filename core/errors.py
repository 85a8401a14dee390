"""Domain errors. The API maps them to HTTP codes; the console shows their message."""


class DomainError(Exception):
    """Base for refusals that come from the domain rules, not from bad input."""

    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidTransition(DomainError):
    """A lifecycle verb was asked from a state that does not allow it (409)."""

    status_code = 409
    code = "invalid_state"


class PermissionDenied(DomainError):
    """Authenticated but not allowed: role, ownership or separation of duties (403)."""

    status_code = 403
    code = "permission_denied"


class ValidationFailed(DomainError):
    """Input that breaks a domain rule, naming the field (400)."""

    status_code = 400
    code = "invalid"


class PauseLocked(PermissionDenied):
    """A pause by an identity admin or a policy rule, which only an identity admin lifts (403)."""

    code = "pause_locked"


class ChangePending(InvalidTransition):
    """An agent already has a wider ceiling or longer envelope waiting for approval (409)."""

    code = "change_pending"


class NoPendingChange(InvalidTransition):
    """Approve or deny asked of an agent with no change waiting (409)."""

    code = "no_pending_change"
