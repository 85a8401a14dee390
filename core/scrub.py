"""The one scrubber: secrets out of anything Mandate stores for people to read later.

Used by the audit trail (``audit.services.scrub``), reported event ``details`` and the ``context``
of recorded decisions. Two rules, at any depth of dicts and lists:

- a value under a secret-bearing key (``SECRET_KEYS``; compared case-insensitively and ignoring
  ``-``/``_``, so ``Authorization``, ``api-key`` and ``APIKEY`` all match; also any key ending in
  ``token``, ``secret``, ``password`` …) is replaced whole, unless it is ``null`` or a boolean;
- inside any string, whatever looks like a secret — a JWT, a PEM block, an API token (``mdt_…``),
  ``Bearer …`` — is replaced, the rest of the text kept.

A replaced secret becomes ``[redacted:<fingerprint>]``: ten hex digits of an HMAC keyed with a key
derived from ``SECRET_KEY``, so the same secret seen twice can be recognised (in the trail, in an
incident) while a short secret cannot be recovered by hashing guesses without the server's key.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import date, datetime
from typing import Any

from django.utils.crypto import salted_hmac

# Normalised (lower case, letters and digits only) names whose values never enter a record.
SECRET_KEYS = frozenset(
    {
        "authorization",
        "proxyauthorization",
        "token",
        "secret",
        "password",
        "passwd",
        "passphrase",
        "apikey",
        "xapikey",
        "privatekey",
        "privatejwk",
        "clientassertion",
        "clientsecret",
        "cookie",
        "setcookie",
        "accesstoken",
        "refreshtoken",
        "idtoken",
        "subjecttoken",
        "actortoken",
        "sessionid",
        "csrftoken",
        "d",  # a JWK's private part
        "digest",
        "key",
    }
)
# Any key ending in one of these is secret too (``github_token``, ``db_password``, ``X-Auth-Secret``).
SECRET_SUFFIXES = ("token", "secret", "password", "passwd", "apikey", "privatekey", "cookie", "authorization")

_SECRET_VALUE = re.compile(
    r"-----BEGIN [A-Z0-9 ]{1,40}-----.*?(?:-----END [A-Z0-9 ]{1,40}-----|\Z)"  # PEM block (or its start)
    r"|\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"  # JWT / JWS (compact)
    r"|\bmdt_[A-Za-z0-9_-]{8,}"  # Mandate API token
    r"|\b[Bb][Ee][Aa][Rr][Ee][Rr]\s+[A-Za-z0-9._~+/=-]{8,}",  # an Authorization header value
    re.DOTALL,
)
# Cheap tests first: most strings hold none of these, and then no regex runs.
_HINTS = ("-----BEGIN", "eyJ", "mdt_", "earer", "EARER")
_NORMALISE = re.compile(r"[^a-z0-9]")


def fingerprint(secret: str) -> str:
    """Ten hex digits identifying ``secret``, keyed with the server's secret."""
    return salted_hmac("mandate.scrub.fingerprint", secret, algorithm="sha256").hexdigest()[:10]


def marker(secret: Any) -> str:
    text = secret if isinstance(secret, str) else json.dumps(secret, sort_keys=True, default=str)
    return f"[redacted:{fingerprint(text)}]"


def _redact(value: Any) -> Any:
    # A flag (``has_secret: true``) or an absent value tells nothing secret: kept as it is.
    return value if value is None or isinstance(value, bool) else marker(value)


def is_secret_key(name: object) -> bool:
    key = _NORMALISE.sub("", str(name).lower())
    return key in SECRET_KEYS or key.endswith(SECRET_SUFFIXES)


def scrub_text(text: str) -> str:
    """``text`` with every secret-looking part replaced by its marker."""
    if not any(hint in text for hint in _HINTS):
        return text
    return _SECRET_VALUE.sub(lambda match: marker(match.group(0)), text)


def scrub(value: Any) -> Any:
    """A JSON-safe copy of ``value`` with secrets replaced (see the module's rules)."""
    if isinstance(value, dict):
        return {str(k): (_redact(v) if is_secret_key(k) else scrub(v)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return scrub_text(str(value))
