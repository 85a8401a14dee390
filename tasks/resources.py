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

Resources are written ``type:name`` (``repo:acme/api``). ``is_unbounded(pattern)`` tells, from what
a pattern can match rather than from a list of spellings, whether it grants every resource or every
resource of a type: ``*``, ``**``, ``*:*``, ``**:**``, ``repo:*``, ``repo:**``, ``repo:*/**`` all do;
``repo:acme/*`` does not (it is bounded by ``acme``).
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


_WILDCARDS_AND_SEPARATORS = frozenset("*/")


def is_unbounded(pattern: str) -> bool:
    """True when ``pattern`` matches every resource, or every resource of some type.

    A literal character bounds a pattern only where it narrows the *name*: the part after the
    first ``:`` (the type) must then be made of wildcards and ``/`` alone for the pattern to grant
    every name of that type. A pattern without ``:`` whose every character is a wildcard or ``/``
    matches across types (``*`` matches ``repo:x``, ``**`` matches everything). A type written with
    wildcards (``*:**``, ``r*:**``) covers at least one whole type, so it is unbounded too.
    """
    if not isinstance(pattern, str) or "*" not in pattern:
        return False
    _type, colon, name = pattern.partition(":")
    if not colon:
        return set(pattern) <= _WILDCARDS_AND_SEPARATORS
    return "*" in name and set(name) <= _WILDCARDS_AND_SEPARATORS


def resource_granted(patterns: Iterable[str], resource: str) -> bool:
    """True when at least one of ``patterns`` matches ``resource``."""
    return any(pattern_matches(p, resource) for p in patterns if isinstance(p, str))
