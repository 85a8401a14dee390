"""The password backend: Django's, except that in SSO-only mode it signs in only the named
break-glass accounts (everyone else signs in through the OpenID provider)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.backends import ModelBackend


class PasswordBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if settings.MANDATE_OIDC_ONLY and username not in settings.MANDATE_BREAK_GLASS_USERS:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
