"""Each log line once, optionally as JSON with its request id; the favicon is linked and served."""

from __future__ import annotations

import json
import logging

import pytest

from console.logs import JsonFormatter, RequestIdFilter

pytestmark = pytest.mark.django_db


def test_a_django_request_warning_reaches_one_handler_only():
    """Django's default gives the "django" logger a console handler of its own on top of the root's."""
    root = logging.getLogger()
    own = []
    logger = logging.getLogger("django.request")
    while logger is not root and logger is not None:
        own.extend(h for h in logger.handlers if not isinstance(h, logging.NullHandler))
        assert logger.propagate, logger.name
        logger = logger.parent
    assert own == []  # every line goes to the root's one handler (pytest adds its own capture there)


def test_json_lines_carry_the_request_id(client):
    from core.request_id import reset_request_id, set_request_id

    record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "Bad Request: %s", ("/x",), None)
    token = set_request_id("req-123")
    try:
        RequestIdFilter().filter(record)
    finally:
        reset_request_id(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "req-123"
    assert line["message"] == "Bad Request: /x" and line["level"] == "WARNING"


def test_every_page_links_a_favicon_that_is_served(client, admin):
    client.force_login(admin)
    page = client.get("/").content.decode()
    assert '<link rel="icon" href="/static/console/favicon.svg"' in page
    assert client.get("/static/console/favicon.svg").status_code == 200


def _configured_handler() -> logging.Handler:
    return next(h for h in logging.getLogger().handlers if any(isinstance(f, RequestIdFilter) for f in h.filters))


def test_a_refused_page_is_one_warning_line_without_a_traceback(signed_in, owner, caplog):
    caplog.set_level(logging.WARNING, logger="django.request")
    assert signed_in(owner).get("/people/").status_code == 403
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    handler = _configured_handler()
    assert handler.filter(record)
    line = handler.format(record)
    assert "Forbidden (Permission denied): /people/" in line
    assert "Traceback" not in line and len(line.splitlines()) == 1


def test_a_server_error_keeps_its_traceback():
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        record = logging.LogRecord(
            "django.request", logging.ERROR, __file__, 1, "Internal Server Error: %s", ("/x",), sys.exc_info()
        )
    record.status_code = 500
    handler = _configured_handler()
    assert handler.filter(record)
    assert "Traceback" in handler.format(record) and "RuntimeError: boom" in handler.format(record)


def test_a_database_outage_outside_a_view_is_one_line_too():
    import sys

    from django.db import OperationalError

    try:
        raise OperationalError("connection refused")
    except OperationalError:
        record = logging.LogRecord(
            "django.request", logging.ERROR, __file__, 1, "Service Unavailable: %s", ("/",), sys.exc_info()
        )
    record.status_code = 503
    handler = _configured_handler()
    assert handler.filter(record)
    line = handler.format(record)
    assert "Traceback" not in line and "Service Unavailable: /" in line
