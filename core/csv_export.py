"""The one CSV writer for every export (audit, evidence, standards): cells a spreadsheet would run
as a formula are neutralised (CSV injection, CWE-1236).

A cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'``, which
spreadsheets show as text; everything else is written as ``csv.writer`` writes it. Rows are
rendered one at a time (``line``), so exports can stream.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: object) -> str:
    """``value`` as CSV cell text: ``None`` empty, formula-like text escaped."""
    if value is None:
        return ""
    if isinstance(value, int | float):  # a number (-3) is data, never a formula
        return str(value)
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class SafeWriter:
    """Render rows as CSV text, escaping each cell."""

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer)

    def line(self, row: Iterable[object]) -> str:
        """One row as CSV text (with its line ending)."""
        self._writer.writerow([cell(value) for value in row])
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate(0)
        return text


def render(rows: Iterable[Iterable[object]]) -> str:
    """Every row as one CSV text."""
    writer = SafeWriter()
    return "".join(writer.line(row) for row in rows)
