"""The PostgreSQL backend's health check between requests (core/postgresql/base.py): a healthy idle
connection is judged usable without a round trip, and a session the server ended is still noticed
and replaced before the next request's first query."""

from __future__ import annotations

import select
import time
from unittest import mock

import psycopg
import pytest
from django.db import connection

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _next_request_first_query() -> int:
    """What a request does: Django marks the connection for a health check when a request ends, and
    its next first query runs the check (closing and reconnecting if it fails)."""
    connection.health_check_done = False
    return _backend_pid()


def test_the_settings_use_the_backend_with_the_cheap_check():
    assert connection.settings_dict["ENGINE"] == "core.postgresql"
    assert connection.settings_dict["CONN_HEALTH_CHECKS"] is True


def test_a_healthy_idle_connection_is_usable_without_a_round_trip():
    _backend_pid()  # connected, idle, nothing pending
    with mock.patch.object(psycopg.Connection, "cursor", side_effect=AssertionError("a round trip was made")):
        assert connection.is_usable() is True


def test_a_connection_inside_a_transaction_is_still_checked_with_a_query():
    with connection.cursor() as cursor:
        cursor.execute("BEGIN")
        try:
            with mock.patch.object(psycopg.Connection, "cursor", side_effect=psycopg.OperationalError("gone")):
                assert connection.is_usable() is False
        finally:
            cursor.execute("ROLLBACK")


def test_a_session_the_server_ended_is_noticed_and_replaced():
    pid = _backend_pid()
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("prepare_threshold", None)
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    socket = connection.connection.pgconn.socket
    deadline = time.monotonic() + 5
    while not select.select([socket], [], [], 0.05)[0] and time.monotonic() < deadline:
        pass  # the server's notice and its closing of the socket arrive asynchronously

    assert connection.is_usable() is False
    new_pid = _next_request_first_query()  # no error reaches the request
    assert new_pid != pid


def test_a_healthy_connection_is_kept_across_requests():
    pid = _backend_pid()
    assert _next_request_first_query() == pid


def test_a_socket_numbered_above_fd_setsize_is_checked_without_a_round_trip():
    """A busy server process may hold more than 1,024 descriptors: the check must not need select()."""
    import os
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        pytest.skip("needs room for 1,200 open files")
    connection.close()
    spare = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        _backend_pid()
        assert connection.connection.pgconn.socket > 1024
        with mock.patch.object(psycopg.Connection, "cursor", side_effect=AssertionError("a round trip was made")):
            assert connection.is_usable() is True
    finally:
        connection.close()
        for fd in spare:
            os.close(fd)
