"""Reading policy files with errors that name file and line.

``tomllib`` reports a syntax error's line; for a wrong *value* we find the line of the offending key
ourselves (``TomlLines``). Cedar's parser reports no position, so ``CedarStatements`` splits a file
into its statements and locates an error inside the statement it came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class PolicyProblem:
    """One reason a policy directory cannot be used."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


# --- durations ------------------------------------------------------------------------------------

_DURATION_RE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_duration(value) -> int | None:
    """Seconds from ``900`` or ``"15m"``/``"1h30m"``/``"2d"``; None when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if not isinstance(value, str) or not value:
        return None
    match = _DURATION_RE.fullmatch(value.strip())
    if match is None or not any(match.groups()):
        return None
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def format_duration(seconds: int) -> str:
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            amount, seconds = divmod(seconds, size)
            if amount:
                parts.append(f"{amount}{unit}")
    return "".join(parts) or "0s"


# --- TOML key → line ------------------------------------------------------------------------------

_BARE_KEY = r"[A-Za-z0-9_-]+"
_KEY_PART = rf"(?:{_BARE_KEY}|\"(?:[^\"\\]|\\.)*\"|'[^']*')"
_DOTTED = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_HEADER_RE = re.compile(rf"^\s*(\[\[?)\s*({_DOTTED})\s*\]\]?\s*(?:#.*)?$")
_ASSIGN_RE = re.compile(rf"^\s*({_DOTTED})\s*=")


def _split_dotted(text: str) -> tuple[str, ...]:
    parts = re.findall(_KEY_PART, text)
    return tuple(p[1:-1] if p[:1] in "\"'" else p for p in parts)


class TomlLines:
    """Where each table and key of a TOML document is written, so semantic errors can cite a line.

    Paths use the parsed structure: ``("levels", "high", "required_approvals")``, and array-of-tables
    entries by index: ``("raise", 2, "to")``. Keys inside inline tables resolve to the line of the
    inline table itself (good enough to find the mistake)."""

    def __init__(self, text: str):
        self.lines: dict[tuple, int] = {}
        table: tuple = ()
        counts: dict[tuple, int] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            header = _HEADER_RE.match(line)
            if header:
                path = _split_dotted(header.group(2))
                if header.group(1) == "[[":
                    index = counts.get(path, 0)
                    counts[path] = index + 1
                    table = (*path, index)
                else:
                    table = path
                self.lines.setdefault(table, number)
                continue
            assign = _ASSIGN_RE.match(line)
            if assign:
                self.lines.setdefault((*table, *_split_dotted(assign.group(1))), number)

    def line_of(self, *path) -> int | None:
        """The line of ``path``, or of its nearest written ancestor."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(tuple(path[:end]))
            if line:
                return line
        return None


# --- Cedar statements -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    start: int  # offset of the first character that is not space or comment
    end: int  # offset just past the terminating ';' (or end of text)
    line: int  # line number of ``start``


def cedar_statements(text: str) -> list[Statement]:
    """Split Cedar policy or schema text at top-level ``;`` (outside strings, comments, braces)."""
    statements: list[Statement] = []
    i, n, depth, start = 0, len(text), 0, None
    while i < n:
        ch = text[i]
        if ch == "/" and text.startswith("//", i):
            nl = text.find("\n", i)
            i = n if nl == -1 else nl
            continue
        if ch.isspace():
            i += 1
            continue
        if start is None:
            start = i
        if ch == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif ch in "{([":
            depth += 1
        elif ch in "})]":
            depth = max(depth - 1, 0)
        elif ch == ";" and depth == 0:
            statements.append(Statement(start, i + 1, text.count("\n", 0, start) + 1))
            start = None
        i += 1
    if start is not None:
        statements.append(Statement(start, n, text.count("\n", 0, start) + 1))
    return statements


_TOKEN_RE = re.compile(
    r"(?:unexpected token|invalid variable in the policy scope:|failed to resolve types?:)\s*`?([^`,\s]+)`?"
)


def _error_token(message: str) -> str | None:
    match = _TOKEN_RE.search(message)
    if match:
        return match.group(1)
    # "invalid policy condition: unles" and the like name the culprit last.
    match = re.search(r":\s*`?([A-Za-z_][\w:]*)`?\s*$", message)
    return match.group(1) if match else None


def token_line(text: str, statement: Statement, message: str) -> int | None:
    """The line of the token a Cedar error names, if it occurs inside ``statement``."""
    token = _error_token(message)
    if not token:
        return None
    # Skip the statement's first character: "unexpected token `entity`" after a missing ';'
    # points at the *next* declaration's keyword, not this one's.
    found = text.find(token, statement.start + 1, statement.end)
    return None if found == -1 else text.count("\n", 0, found) + 1


def locate_in(text: str, statement: Statement, message: str) -> int:
    """The line inside ``statement`` that ``message`` (a Cedar error) most likely points at."""
    line = token_line(text, statement, message)
    if line:
        return line
    if "end of input" in message:
        return text.count("\n", 0, max(statement.end - 1, statement.start)) + 1
    return statement.line
