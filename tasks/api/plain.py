"""Plain Django views for the per-call decision endpoints, documented through their DRF twins.

A gateway asks on every tool call, and DRF's request cycle (request wrapping, content negotiation,
parser and renderer selection, throttling and permission plumbing) cost as much CPU as the decision
itself. ``plain_endpoint`` serves a handler with only what these endpoints need — the documented
view's own ``authentication_classes`` and ``permission_classes`` (so a change to who may ask, or
how a token is checked, is made once, on the class), a JSON body, domain errors rendered exactly as
``core.api.exception_handler`` renders them — and sets ``cls`` on the view function to the
documented ``APIView``, so drf-spectacular (and with it the OpenAPI document, schemathesis and
clients) describes the endpoint from that class's ``extend_schema`` as before.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions

from core import json_input
from core.api import domain_error_body
from core.errors import DomainError, ValidationFailed
from core.json_output import json_response


def _error(status: int, detail: str, code: str | None = None, **headers) -> JsonResponse:
    body = {"detail": detail}
    if code:
        body["code"] = code
    response = JsonResponse(body, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _domain_error(exc: DomainError) -> JsonResponse:
    return JsonResponse(domain_error_body(exc), status=exc.status_code)


def plain_endpoint(documented: type, *, max_body: int) -> Callable:
    """Serve ``handler(request, body, user) -> dict`` at a POST-only URL, described by ``documented``."""

    authenticators = [cls() for cls in documented.authentication_classes]
    permissions = [cls() for cls in documented.permission_classes]

    def authenticate(request: HttpRequest):
        """As DRF does: the first authenticator that recognises the credentials decides."""
        for authenticator in authenticators:
            result = authenticator.authenticate(request)
            if result is not None:
                return result
        return None

    def wrap(handler: Callable) -> Callable:
        @csrf_exempt  # API-token authentication only: no cookie, so no cross-site request to forge
        def view(request: HttpRequest, *args, **kwargs):
            if request.method != "POST":
                return _error(405, f'Method "{request.method}" not allowed.', Allow="POST")
            try:
                result = authenticate(request)
            except exceptions.AuthenticationFailed as exc:
                return _error(401, str(exc.detail), exc.default_code, WWW_Authenticate="Bearer")
            if result is None:
                return _error(
                    401, "Authentication credentials were not provided.", "not_authenticated", WWW_Authenticate="Bearer"
                )
            user, token = result
            request.user, request.auth = user, token
            for permission in permissions:
                if not permission.has_permission(request, None):
                    return _error(403, str(getattr(permission, "message", "not allowed")), "permission_denied")
            content_type = request.content_type or ""
            if content_type != "application/json":
                return _error(415, f'Unsupported media type "{content_type}" in request.', "unsupported_media_type")
            declared = request.META.get("CONTENT_LENGTH") or "0"
            if (declared.isdigit() and int(declared) > max_body) or len(request.body) > max_body:
                return _domain_error(ValidationFailed(f"at most {max_body} bytes of JSON", field="body"))
            try:
                body = json_input.loads(request.body)  # refuses bodies nested too deeply, too
            except json_input.JsonInputError as exc:
                return _error(400, str(exc), "parse_error")
            try:
                return json_response(handler(request, body, user), compact=True)
            except exceptions.AuthenticationFailed as exc:  # the decision found the token no longer valid
                return _error(401, str(exc.detail), exc.default_code, WWW_Authenticate="Bearer")
            except DomainError as exc:
                return _domain_error(exc)

        view.cls = documented  # what drf-spectacular reads to describe the endpoint
        view.initkwargs = {}
        view.allowed_methods = ("POST",)  # console.middleware answers any other with 405
        return view

    return wrap
