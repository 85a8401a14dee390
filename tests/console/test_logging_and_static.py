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
