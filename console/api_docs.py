"""The interactive API docs (Swagger UI, Redoc) and the schema they read.

``/api/schema/`` is always fetchable: clients and code generators read it. The interactive pages ask
for sign-in unless ``MANDATE_API_DOCS_PUBLIC`` (on by default only under DEBUG), and both are served
so they work under the Content-Security-Policy of console/settings.py.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_update
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponseBase
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerSplitView

View = Callable[..., HttpResponseBase]


def _signed_in_unless_public(view: View) -> View:
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponseBase:
        if not settings.MANDATE_API_DOCS_PUBLIC and not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        return view(request, *args, **kwargs)

    return wrapped


# Swagger UI's start-up script comes from the same URL with ?script (the split view), never inline.
swagger_ui = _signed_in_unless_public(
    SpectacularSwaggerSplitView.as_view(url_name="schema", template_name="api_docs/swagger_ui.html")
)

# Redoc renders with styled-components, which writes its CSS into <style> elements at run time, and
# runs its search index in a Web Worker made from a blob: URL. Neither works under the site-wide
# policy, so this one page (no form, no user data, scripts still only from our own files) allows
# inline styles and blob: workers.
redoc = _signed_in_unless_public(
    csp_update({"style-src": [UNSAFE_INLINE], "worker-src": [SELF, "blob:"]})(
        SpectacularRedocView.as_view(url_name="schema", template_name="api_docs/redoc.html")
    )
)
