"""Resource patterns: which resources a task envelope's ``resources`` list grants.

A pattern is matched against the whole resource string, character by character, with two
wildcards:

- ``*`` matches any run of characters (including none) **within one path segment**: it never
  crosses a ``/``. ``repo:acme/*`` matches ``repo:acme/api`` but not ``repo:acme/api/x``, nor
  ``repo:other/api``.
- ``**`` matches any run of characters **including** ``/``: ``repo:acme/**`` matches
  ``repo:acme/api`` and ``repo:acme/api/x``.
- Everything else is literal (``?``, ``[``, ``.``, ``:`` have no special meaning), and matching is
  case-sensitive. A pattern without wildcards grants exactly that resource.

There is no escape for a literal ``*``; resource names that contain one can only be granted by a
wildcard. An empty pattern list grants no resource.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache


@lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The regular expression for one pattern (cached: envelopes repeat their patterns on every call)."""
    parts = []
    for i, piece in enumerate(pattern.split("**")):
        if i:
            parts.append(".*")
        parts.append("[^/]*".join(re.escape(literal) for literal in piece.split("*")))
    return re.compile("".join(parts), re.DOTALL)


def pattern_matches(pattern: str, resource: str) -> bool:
    return compile_pattern(pattern).fullmatch(resource) is not None


def resource_granted(patterns: Iterable[str], resource: str) -> bool:
    """True when at least one of ``patterns`` matches ``resource``."""
    return any(pattern_matches(p, resource) for p in patterns if isinstance(p, str))
