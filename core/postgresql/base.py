"""Django's PostgreSQL backend, with a cheaper health check between requests, timestamps read in C
and prepared statements planned once.

With ``CONN_HEALTH_CHECKS`` (settings: persistent connections survive a database restart), Django
checks a reused connection before a request's first query with ``SELECT 1``: one round trip on
every request, a third of a decision's. An idle connection outside a transaction receives nothing
the client did not ask for (Mandate does not ``LISTEN``): a server that restarts, terminates the
session or times it out sends its error and closes the socket. So a socket with nothing to read on
an idle connection is usable, and only a socket with something waiting on it, or a connection that
is not idle, pays the ``SELECT 1`` (which then fails and Django reconnects, as before).

And timestamps read in C. Django loads every ``timestamptz`` with its own subclass of psycopg's
loader (to attach Django's time zone), which psycopg cannot swap for its C implementation: each
timestamp is parsed in Python, 4 to 5 µs apiece (a decision's load statement carries a dozen). With
Django's time zone UTC, psycopg's own loader gives the very same values (aware, ``tzinfo`` the
``datetime.timezone.utc`` object, read in the session's time zone, which Django sets to UTC), so
the connection uses that, in C; tests/core/test_postgresql_health.py compares the two.
"""

from __future__ import annotations

import datetime
import select
from typing import Any

import psycopg
from django.db.backends.postgresql import base
from django.db.backends.postgresql.psycopg_any import register_tzloader
from psycopg import pq
from psycopg.types.datetime import TimestamptzLoader

_TIMESTAMPTZ_OID = psycopg.adapters.types["timestamptz"].oid


class DatabaseWrapper(base.DatabaseWrapper):
    def _configure_connection(self, connection: psycopg.Connection[Any]) -> bool:
        # Only the hot paths' statements are prepared (core.sql.prepared_cursor; Django's own binds
        # on the client and prepares nothing), and each looks rows up by key. Left to choose,
        # PostgreSQL plans a statement afresh for its first five runs, and for ever when a
        # parameter is a list (``= ANY(%s)``): a batch's credentials' load cost 0.86 ms of planning
        # every time. A generic plan is planned once per connection.
        commit = super()._configure_connection(connection)
        connection.execute("SET plan_cache_mode = force_generic_plan")
        return commit or not connection.autocommit

    def get_new_connection(self, conn_params: dict[str, Any]) -> psycopg.Connection[Any]:
        connection = super().get_new_connection(conn_params)
        if self.timezone is datetime.UTC:
            connection.adapters.register_loader("timestamptz", TimestamptzLoader)
        return connection

    def create_cursor(self, name: str | None = None) -> Any:
        loader = self.connection.adapters.get_loader(_TIMESTAMPTZ_OID, pq.Format.TEXT)
        if not hasattr(loader, "timezone"):  # psycopg's own loader, registered above
            if self.timezone is not datetime.UTC:  # the setting changed since (tests)
                register_tzloader(self.timezone, self.connection)
                return super().create_cursor(name)
            # Django's create_cursor would compare that loader's time zone with its own: the
            # session reads in UTC, which is Django's. For named cursors, Django's own branch.
            if name is None:
                return self.connection.cursor()
            if self.settings_dict["OPTIONS"].get("server_side_binding") is not True:
                return base.ServerSideCursor(  # type: ignore[attr-defined]  # defined for psycopg 3 only
                    self.connection, name=name, scrollable=False, withhold=self.connection.autocommit
                )
            return self.connection.cursor(name, scrollable=False, withhold=self.connection.autocommit)
        return super().create_cursor(name)

    def is_usable(self) -> bool:
        if self.connection is None:
            return False
        pgconn = self.connection.pgconn
        if pgconn.status != pq.ConnStatus.OK:
            return False
        if pgconn.transaction_status == pq.TransactionStatus.IDLE and hasattr(select, "poll"):
            # poll, not select: a busy server process may hold more than FD_SETSIZE descriptors.
            waiting = select.poll()
            try:
                waiting.register(pgconn.socket, select.POLLIN | select.POLLPRI)
                if not waiting.poll(0):
                    return True
            except (OSError, ValueError, psycopg.Error):  # no socket left to ask
                return False
        return super().is_usable()
