"""Answers for when the database cannot be reached: a 503 in the shape each family of URL speaks.

OAuth endpoints answer RFC 6749's ``temporarily_unavailable``, the API, the decision endpoint and the
discovery documents the API's ``{"detail", "code"}`` shape, console pages a plain page that needs no
database to render; all with ``Retry-After``. ``/healthz`` never touches the database (it says the
process lives) and ``/readyz`` answers its own 503.

Two hooks, because an outage can surface in two places: a view's query (``process_exception`` of the
middleware, which also works under ``DEBUG``), or a middleware's (the session saved on the way out, say),
which Django turns into its 500 handler (``handler500`` below, which looks at the exception in flight).
"""

from __future__ import annotations

import logging
import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.views.defaults import server_error

logger = logging.getLogger("mandate.outage")

RETRY_AFTER_SECONDS = 5
_OUTAGES = (OperationalError, InterfaceError)
_JSON_PREFIXES = ("/api/", "/.well-known/", "/readyz", "/metrics")
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Mandate is temporarily unavailable</title></head>
<body>
<h1>Temporarily unavailable</h1>
<p>Mandate cannot reach its database right now. Nothing you did was lost; try again in a few seconds.</p>
</body></html>
"""


def outage_response(request) -> HttpResponse:
    path = request.path
    if path.startswith("/oauth/"):
        response: HttpResponse = JsonResponse(
            {"error": "temporarily_unavailable", "error_description": "the database cannot be reached; try again"},
            status=503,
        )
        response["Cache-Control"] = "no-store"
    elif path.startswith(_JSON_PREFIXES):
        response = JsonResponse(
            {"detail": "The database cannot be reached; try again shortly.", "code": "temporarily_unavailable"},
            status=503,
        )
    else:
        response = HttpResponse(_PAGE, status=503, content_type="text/html; charset=utf-8")
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def is_outage(exc: BaseException | None) -> bool:
    return isinstance(exc, _OUTAGES)


class DatabaseOutageMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not is_outage(exception):
            return None
        # One line, no traceback: the cause is outside this process and says nothing new per request.
        logger.warning("database unavailable on %s %s: %s", request.method, request.path, exception)
        return outage_response(request)


def server_error_or_outage(request, *args, **kwargs):
    """``handler500``: an outage raised outside a view still gets its 503, everything else Django's 500."""
    if is_outage(sys.exc_info()[1]):
        return outage_response(request)
    return server_error(request, *args, **kwargs)
