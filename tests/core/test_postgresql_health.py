"""The PostgreSQL backend's health check between requests (core/postgresql/base.py): a healthy idle
connection is judged usable without a round trip, and a session the server ended is still noticed
and replaced before the next request's first query."""

from __future__ import annotations

import datetime
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


# --- timestamps read by psycopg's C loader -----------------------------------------------------------


def _django_loader_reads(sql: str, params: list) -> tuple:
    """What Django's own loader (its subclass of psycopg's Python loader) reads for ``sql``."""
    from django.db.backends.postgresql.psycopg_any import register_tzloader

    with connection.cursor() as wrapper:
        cursor = wrapper.cursor  # psycopg's cursor under Django's wrapper
        register_tzloader(connection.timezone, cursor)  # on this cursor alone
        cursor.execute(sql, params)
        return cursor.fetchone()


def test_timestamps_are_read_in_c_and_equal_to_what_django_reads():
    from django.db.backends.postgresql.base import TIMESTAMPTZ_OID
    from psycopg import pq as libpq
    from psycopg.adapt import Loader

    loader = connection.cursor().cursor.adapters.get_loader(TIMESTAMPTZ_OID, libpq.Format.TEXT)
    if psycopg.pq.__impl__ != "python":
        assert not issubclass(loader, Loader), loader  # psycopg's C class, not a Python subclass
    sql = (
        "SELECT now(), %s::timestamptz, '2026-01-01 00:00:00.123456+05'::timestamptz, "
        "'0001-01-01 00:00:00+00'::timestamptz, '9999-12-31 23:59:59.999999+00'::timestamptz, NULL::timestamptz"
    )
    params = [datetime.datetime(2026, 3, 29, 1, 30, tzinfo=datetime.UTC)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        ours = cursor.fetchone()
    theirs = _django_loader_reads(sql, params)
    assert ours[1:] == theirs[1:]
    assert [value.tzinfo for value in ours[:-1]] == [datetime.UTC] * 5
    assert ours[-1] is None


def test_models_named_cursors_and_use_tz_off_read_what_django_reads(owner):
    from django.test import override_settings

    from identities.models import Agent
    from tests.helpers.factories import make_agent

    agent = make_agent(owner)
    stored = Agent.objects.values_list("created_at", flat=True).get(pk=agent.pk)
    assert stored == agent.created_at and stored.tzinfo is datetime.UTC
    # .iterator() reads through a named (server-side) cursor.
    assert [a.created_at for a in Agent.objects.filter(pk=agent.pk).iterator(chunk_size=10)] == [stored]
    # USE_TZ switched off on the open connection (Django then reads naive datetimes): what Django reads.
    with override_settings(USE_TZ=False):
        naive = Agent.objects.values_list("created_at", flat=True).get(pk=agent.pk)
        assert naive == stored.replace(tzinfo=None)
    connection.close()  # the next connection is made with USE_TZ on again
    assert Agent.objects.values_list("created_at", flat=True).get(pk=agent.pk).tzinfo is datetime.UTC
