"""Validators for the identifiers Mandate hands out and accepts."""

from __future__ import annotations

import re

SCOPE_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}:[a-z0-9*][a-z0-9_.*-]{0,62}$")
SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
RESOURCE_RE = re.compile(r"^[^\s\x00-\x1f]{1,512}$")

_TRUST_DOMAIN_RE = re.compile(r"[a-z0-9._-]+")
_PATH_SEGMENT_RE = re.compile(r"[A-Za-z0-9._-]+")
SPIFFE_MAX_BYTES = 2048


def is_scope(value: object) -> bool:
    return isinstance(value, str) and SCOPE_RE.fullmatch(value) is not None


def is_valid_trust_domain(value: str) -> bool:
    return bool(value) and _TRUST_DOMAIN_RE.fullmatch(value) is not None


def parse_spiffe_id(value: object) -> tuple[str, list[str]] | None:
    """Split a SPIFFE ID into (trust domain, path segments), or None when it is not strictly valid.

    Full-match rules of the SPIFFE ID standard: scheme exactly ``spiffe://``, trust domain of
    ``[a-z0-9._-]``, path segments of ``[A-Za-z0-9._-]`` with no empty, ``.`` or ``..`` segment, no
    query, fragment, port or user info, at most 2048 bytes.
    """
    if not isinstance(value, str) or not value.isascii():
        return None
    if len(value.encode()) > SPIFFE_MAX_BYTES or not value.startswith("spiffe://"):
        return None
    rest = value[len("spiffe://") :]
    domain, slash, path = rest.partition("/")
    if not is_valid_trust_domain(domain):
        return None
    if not slash:
        return domain, []
    segments = path.split("/")
    for segment in segments:
        if segment in ("", ".", "..") or _PATH_SEGMENT_RE.fullmatch(segment) is None:
            return None
    return domain, segments


def is_spiffe_id(value: object) -> bool:
    return parse_spiffe_id(value) is not None
