"""Log records as plain text (default) or one JSON object per line (``LOG_FORMAT=json``), both carrying
the id of the request they happened in (``X-Request-ID``, also on audit rows)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        from core.request_id import current_request_id

        # django.request logs after the middleware has returned: its record carries the request.
        record.request_id = current_request_id() or getattr(getattr(record, "request", None), "request_id", "-")
        return True


class ClientErrorsWithoutTraceback(logging.Filter):
    """A refused request (403, 404, 405…) is the application working: Django logs it with the
    exception attached, which printed a traceback for every permission refusal. Keep the one line;
    only server errors (5xx) carry their traceback — except the 503 of a database outage."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if isinstance(status, int) and record.exc_info and (status < 500 or self._outage(status, record)):
            record.exc_info = None
            record.exc_text = None
        return True

    @staticmethod
    def _outage(status: int, record: logging.LogRecord) -> bool:
        """A database outage raised in a middleware (reading the session, say) reaches handler500,
        which answers 503: the cause is outside this process, and a traceback per request of an
        outage says nothing new (console/outage.py logs views' outages as one line the same way)."""
        from console.outage import is_outage

        return status == 503 and record.exc_info is not None and is_outage(record.exc_info[1])


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        status = getattr(record, "status_code", None)
        if status is not None:
            entry["status"] = status
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)
