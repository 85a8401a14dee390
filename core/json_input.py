"""The one way a JSON request body is read: parsed, then refused when nested too deeply.

Every JSON endpoint reads its body through here — DRF views through ``DepthLimitedJSONParser`` (the
default parser in ``REST_FRAMEWORK``), the plain per-call views through ``loads`` — so a body nested
hundreds of levels deep is a 400 naming the limit, never a ``RecursionError`` (a 500) somewhere
further in (validation, scrubbing, storing as jsonb).

``MAX_DEPTH`` counts containers: ``{"a": [1]}`` is 2 deep. The check costs one ``bytes.count`` per
bracket kind on ordinary bodies: only a body with more than ``MAX_DEPTH`` opening brackets is walked.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import IO, Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_DEPTH = 32


class JsonInputError(ValueError):
    """The body is not JSON, or nests deeper than ``MAX_DEPTH``; ``str()`` says which, for a 400."""


def too_deep_message(max_depth: int = MAX_DEPTH) -> str:
    return f"JSON nested deeper than {max_depth} levels; flatten the body"


def exceeds_depth(value: Any, max_depth: int = MAX_DEPTH) -> bool:
    """True when ``value`` (parsed JSON) holds containers nested more than ``max_depth`` deep.
    Iterative, level by level (the containers at one depth, then those inside them), so the check
    itself cannot recurse too far."""
    level = [value] if isinstance(value, dict | list) else []
    depth = 1
    while level:
        if depth > max_depth:
            return True
        inside = []
        for node in level:
            for child in node.values() if isinstance(node, dict) else node:
                if isinstance(child, (dict, list)):
                    inside.append(child)
        level = inside
        depth += 1
    return False


def _may_be_deep(raw: bytes | str, max_depth: int) -> bool:
    if isinstance(raw, str):
        return raw.count("{") + raw.count("[") > max_depth
    return raw.count(b"{") + raw.count(b"[") > max_depth


def check_depth(value: Any, raw: bytes | str | None = None, *, max_depth: int = MAX_DEPTH) -> Any:
    """``value`` unchanged, or ``JsonInputError`` when nested deeper than ``max_depth``."""
    if (raw is None or _may_be_deep(raw, max_depth)) and exceeds_depth(value, max_depth):
        raise JsonInputError(too_deep_message(max_depth))
    return value


def loads(raw: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse a request body: the value, or ``JsonInputError`` (not JSON, or nested too deeply)."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise JsonInputError(too_deep_message(max_depth)) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise JsonInputError(f"JSON parse error - {exc}") from None
    return check_depth(value, raw, max_depth=max_depth)


class DepthLimitedJSONParser(JSONParser):
    """DRF's JSON parser, refusing bodies nested deeper than ``MAX_DEPTH`` with a 400."""

    max_depth = MAX_DEPTH

    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        raw = stream.read()
        try:
            value = super().parse(io.BytesIO(raw), media_type, parser_context)
        except RecursionError:
            raise ParseError(too_deep_message(self.max_depth)) from None
        try:
            return check_depth(value, raw, max_depth=self.max_depth)
        except JsonInputError as exc:
            raise ParseError(str(exc)) from None
