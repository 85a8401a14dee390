"""Audiences: who a credential is for (its ``aud``), as envelopes list them and gateways serve them.

An audience is 1 to 500 visible ASCII characters without spaces. A URL (``http://`` or
``https://``) must be an absolute ``https`` URL with a host and no fragment; plain ``http`` is
accepted only for a loopback host (``localhost``, ``127.0.0.1``, ``[::1]``) while ``DEBUG`` is on.
Other audiences are names a relying party chooses and compares verbatim: the deployment's default
(``MANDATE_DEFAULT_AUDIENCE``, ``mandate`` unless set), a cloud's token service
(``sts.amazonaws.com``, ``api://AzureADTokenExchange``, ``//iam.googleapis.com/…``).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.conf import settings
from django.core.validators import RegexValidator

from core.errors import ValidationFailed

MAX_AUDIENCES = 20
MAX_AUDIENCE_CHARS = 500
AUDIENCE_PATTERN = r"^[\x21-\x7e]{1,500}$"  # stated in the OpenAPI document too
_VISIBLE = re.compile(AUDIENCE_PATTERN)
AUDIENCE_VALIDATOR = RegexValidator(AUDIENCE_PATTERN, "1 to 500 visible characters, no spaces")
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def default_audience() -> str:
    return settings.MANDATE_DEFAULT_AUDIENCE


def audience_problem(value: object) -> str | None:
    """Why ``value`` is not an audience, or None when it is one."""
    if not isinstance(value, str) or not _VISIBLE.fullmatch(value):
        return f"an audience is 1 to {MAX_AUDIENCE_CHARS} visible characters, no spaces"
    scheme = value.split(":", 1)[0].lower() if ":" in value else ""
    if scheme not in ("http", "https"):
        return None
    parts = urlsplit(value)
    if not parts.netloc or not parts.hostname or "#" in value:
        return f"{value[:80]!r} is not an absolute URL with a host and without a fragment"
    if parts.username is not None or parts.password is not None:
        return f"{value[:80]!r} must not carry a user name or password"
    if scheme == "http" and not (settings.DEBUG and parts.hostname in _LOOPBACK):
        return f"{value[:80]!r} must use https (plain http only on a loopback address, in development)"
    return None


def clean_audiences(value: object, *, field: str = "audiences") -> list[str]:
    """A list of distinct audiences, in the order given; ``ValidationFailed`` (400) naming the first problem."""
    if not isinstance(value, list) or not value or len(value) > MAX_AUDIENCES:
        raise ValidationFailed(f"a list of 1 to {MAX_AUDIENCES} audiences", field=field)
    for item in value:
        problem = audience_problem(item)
        if problem:
            raise ValidationFailed(problem, field=field)
    return list(dict.fromkeys(value))
