"""Step-up: sensitive actions (approving a high-risk envelope, changing someone's roles) need a
recent authentication in this session — within ``MANDATE_STEP_UP_MAX_AGE`` seconds, and with SSO at
the ``MANDATE_STEP_UP_ACR`` level when one is configured. Off when the setting is 0.

It guards console sessions. API tokens are not interactive and cannot step up; they keep acting
with their owner's roles (revoke or scope them accordingly)."""

from __future__ import annotations

import time
import urllib.parse

from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse

from accounts.sessions import AUTH_TIME_KEY

SSO_SESSION_KEY = "mandate_sso"  # console.sso.SESSION_KEY, without importing SSO when it is off
SSO_ACR_KEY = "mandate_sso_acr"


def step_up_needed(request: HttpRequest) -> str:
    """Why this session must re-authenticate before a sensitive action, or "" when it need not."""
    max_age = settings.MANDATE_STEP_UP_MAX_AGE
    if not max_age or getattr(request, "auth", None) is not None:  # off, or an API token (see above)
        return ""
    if not hasattr(request, "session"):
        return ""
    authenticated_at = float(request.session.get(AUTH_TIME_KEY) or 0)
    if time.time() - authenticated_at > max_age:
        return f"This action needs a sign-in within the last {_minutes(max_age)}; confirm it's you to go on."
    acr_wanted = settings.MANDATE_STEP_UP_ACR
    if acr_wanted and request.session.get(SSO_SESSION_KEY) and request.session.get(SSO_ACR_KEY, "") != acr_wanted:
        return "This action needs a stronger sign-in at your identity provider; confirm it's you to go on."
    return ""


def step_up_url(request: HttpRequest, next_url: str) -> str:
    """Where to re-authenticate: the provider for SSO sessions, the password form otherwise."""
    query = urllib.parse.urlencode({"next": next_url})
    if request.session.get(SSO_SESSION_KEY):
        return f"{reverse('oidc_authentication_init')}?step_up=1&{query}"
    return f"{reverse('reauthenticate')}?{query}"


def _minutes(seconds: int) -> str:
    minutes = max(round(seconds / 60), 1)
    return "minute" if minutes == 1 else f"{minutes} minutes"
