import re
import uuid

from django.conf import settings

from core.request_id import reset_request_id, set_request_id

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    """Gives every request an id (or keeps a well-formed X-Request-ID) for logs and audit rows."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request.request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        token = set_request_id(request.request_id)
        try:
            response = self.get_response(request)
        finally:
            reset_request_id(token)
        response["X-Request-ID"] = request.request_id
        return response


class SsoSessionMiddleware:
    """Re-validates single sign-on sessions with the provider once their window has passed
    (console/sso.py). Costs nothing when SSO is off or the session is not an SSO one; SSO's code is
    loaded only when a session needs it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if settings.MANDATE_OIDC_ENABLED and request.session.get("mandate_sso"):
            from console.sso import revalidated_or_signed_out

            refused = revalidated_or_signed_out(request)
            if refused is not None:
                return refused
        return self.get_response(request)
