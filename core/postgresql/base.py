"""Django's PostgreSQL backend, with a cheaper health check between requests.

With ``CONN_HEALTH_CHECKS`` (settings: persistent connections survive a database restart), Django
checks a reused connection before a request's first query with ``SELECT 1``: one round trip on
every request, a third of a decision's. An idle connection outside a transaction receives nothing
the client did not ask for (Mandate does not ``LISTEN``): a server that restarts, terminates the
session or times it out sends its error and closes the socket. So a socket with nothing to read on
an idle connection is usable, and only a socket with something waiting on it, or a connection that
is not idle, pays the ``SELECT 1`` (which then fails and Django reconnects, as before).
"""

from __future__ import annotations

import select

import psycopg
from django.db.backends.postgresql import base
from psycopg import pq


class DatabaseWrapper(base.DatabaseWrapper):
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
