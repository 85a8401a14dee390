import functools
import re
import time
import uuid

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import SESSION_KEY, logout
from django.http import JsonResponse
from django.urls import Resolver404, resolve

from accounts.sessions import forget_session, mark_session_used, session_has_ended
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


class SessionLifetimeMiddleware:
    """Ends a signed-in console session idle for longer than MANDATE_SESSION_IDLE_SECONDS or older
    than MANDATE_SESSION_MAX_SECONDS, however busy; the person signs in again. Requests carrying an
    API token have no session and pass untouched."""

    ENDED = {
        "idle": "Your session ended after {minutes} minutes without activity; sign in again.",
        "lifetime": "Your session reached its limit of {hours} hours; sign in again.",
    }

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        session = request.session
        if SESSION_KEY in session:
            now = time.time()
            idle, lifetime = settings.MANDATE_SESSION_IDLE_SECONDS, settings.MANDATE_SESSION_MAX_SECONDS
            ended = session_has_ended(session, now=now, idle=idle, lifetime=lifetime)
            if ended:
                key = session.session_key
                logout(request)
                forget_session(key)
                if not request.path.startswith("/api/"):
                    text = self.ENDED[ended].format(minutes=f"{idle / 60:g}", hours=f"{lifetime / 3600:g}")
                    messages.info(request, text)
            else:
                mark_session_used(session, now=now, idle=idle, lifetime=lifetime)
        return self.get_response(request)


@functools.lru_cache(maxsize=2048)  # the hot paths (decisions, events) resolve once per process
def allowed_methods(path: str) -> tuple[str, ...] | None:
    """The methods the view at ``path`` answers, or None when it says nothing (plain views refuse
    for themselves) or nothing is there."""
    try:
        func = resolve(path).func
    except Resolver404:
        return None
    explicit = getattr(func, "allowed_methods", None)
    if explicit is not None:
        return tuple(explicit)
    actions = getattr(func, "actions", None)  # a DRF viewset route: only the mapped methods
    if actions is not None:
        methods = [m.upper() for m in actions]
    elif hasattr(func, "cls") and hasattr(func.cls, "http_method_names"):
        methods = [m.upper() for m in func.cls.http_method_names if m != "options" and hasattr(func.cls, m)]
    else:
        return None
    if "GET" in methods and "HEAD" not in methods:
        methods.append("HEAD")
    return (*methods, "OPTIONS")


class UndeclaredMethodMiddleware:
    """A method an API URL does not have (TRACE, PUT on a collection…) is a 405 naming the ones it
    has in ``Allow``, before authentication: the method is wrong whoever asks."""

    PREFIXES = ("/api/", "/access/")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info.startswith(self.PREFIXES):
            allowed = allowed_methods(request.path_info)
            if allowed is not None and request.method not in allowed:
                response = JsonResponse(
                    {"detail": f'Method "{request.method}" not allowed.', "code": "method_not_allowed"}, status=405
                )
                response["Allow"] = ", ".join(allowed)
                return response
        return self.get_response(request)
