"""Evidence is append-only in the database itself, not only in the code.

Triggers refuse UPDATE, DELETE and TRUNCATE on the evidence tables (the audit trail, its per-jti
index, and the activity record that holds every recorded decision), and let an audit chain's head
move forward only.

- **PostgreSQL**: the triggers let through only a role holding the privileges of the table's owner
  (the role that runs migrations; superusers too). The application connects as a role that does not
  own the tables, so it can neither change evidence nor drop or disable the triggers (both need
  ownership) — and there is no setting it could flip. Retention (``manage.py purge_audit``) and the
  test suite's flush run as the owner.
- **SQLite** (development, tests): there are no roles, so the triggers ask a function each Django
  connection registers, ``mandate_evidence_bypass()``, which answers 1 only inside
  ``evidence_bypass(reason=…)`` on that connection (a log line names the reason). Any other
  connection, the ``sqlite3`` shell included, is refused.

The triggers are (re)installed after every ``migrate`` (``post_migrate``): SQLite drops a table's
triggers when a migration rebuilds the table.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

from django.apps import apps
from django.db import connection as default_connection

log = logging.getLogger(__name__)

# (app label, model) of the tables whose rows are evidence.
EVIDENCE_MODELS = (("audit", "AuditEvent"), ("audit", "AuditJti"), ("tasks", "ActivityEvent"))
CHAIN_MODEL = ("audit", "AuditChain")
_BYPASS_ATTR = "_mandate_evidence_bypass"
REFUSAL = "evidence is append-only"


def _table(label: tuple[str, str]) -> str | None:
    try:
        return apps.get_model(*label)._meta.db_table
    except LookupError:
        return None


def evidence_tables() -> list[str]:
    return [t for t in (_table(label) for label in EVIDENCE_MODELS) if t]


def chain_table() -> str | None:
    return _table(CHAIN_MODEL)


# --- PostgreSQL ------------------------------------------------------------------------------------

_PG_FUNCTIONS = """
CREATE OR REPLACE FUNCTION mandate_evidence_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- The owner role (migrations, retention, the test suite's flush) and superusers pass; any other
  -- role, the application's included, is refused whatever it was granted.
  IF pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'USAGE') THEN
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'evidence is append-only: % on % refused for role %', TG_OP, TG_TABLE_NAME, current_user
    USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE OR REPLACE FUNCTION mandate_chain_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'USAGE') THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'audit chain heads only move forward: % from length % to %', OLD.key, OLD.length, NEW.length
    USING ERRCODE = 'insufficient_privilege';
END $$;
"""


def _pg_statements(tables: list[str], chain: str | None) -> list[str]:
    statements = [_PG_FUNCTIONS]
    for table in tables:
        statements += [
            f'CREATE OR REPLACE TRIGGER mandate_guard_rows BEFORE UPDATE OR DELETE ON "{table}" '
            "FOR EACH ROW EXECUTE FUNCTION mandate_evidence_guard()",
            f'CREATE OR REPLACE TRIGGER mandate_guard_truncate BEFORE TRUNCATE ON "{table}" '
            "FOR EACH STATEMENT EXECUTE FUNCTION mandate_evidence_guard()",
        ]
    if chain:
        statements += [
            # The WHEN clause keeps the append path free: the function runs only for a backward move.
            f'CREATE OR REPLACE TRIGGER mandate_chain_forward BEFORE UPDATE ON "{chain}" FOR EACH ROW '
            "WHEN (NEW.length < OLD.length OR NEW.key <> OLD.key) EXECUTE FUNCTION mandate_chain_forward()",
            f'CREATE OR REPLACE TRIGGER mandate_guard_rows BEFORE DELETE ON "{chain}" '
            "FOR EACH ROW EXECUTE FUNCTION mandate_evidence_guard()",
            f'CREATE OR REPLACE TRIGGER mandate_guard_truncate BEFORE TRUNCATE ON "{chain}" '
            "FOR EACH STATEMENT EXECUTE FUNCTION mandate_evidence_guard()",
        ]
    return statements


# --- SQLite ----------------------------------------------------------------------------------------


def _sqlite_statements(tables: list[str], chain: str | None) -> list[str]:
    statements = []
    bypassed = "mandate_evidence_bypass() = 0"
    for table in tables:
        for op in ("UPDATE", "DELETE"):
            statements.append(
                f'CREATE TRIGGER IF NOT EXISTS "mandate_guard_{table}_{op.lower()}" BEFORE {op} ON "{table}" '
                f"WHEN {bypassed} BEGIN SELECT RAISE(ABORT, '{REFUSAL}: {op} on {table} refused'); END"
            )
    if chain:
        statements += [
            f'CREATE TRIGGER IF NOT EXISTS "mandate_guard_{chain}_update" BEFORE UPDATE ON "{chain}" '
            f"WHEN (NEW.length < OLD.length OR NEW.key <> OLD.key) AND {bypassed} "
            "BEGIN SELECT RAISE(ABORT, 'audit chain heads only move forward'); END",
            f'CREATE TRIGGER IF NOT EXISTS "mandate_guard_{chain}_delete" BEFORE DELETE ON "{chain}" '
            f"WHEN {bypassed} BEGIN SELECT RAISE(ABORT, '{REFUSAL}: DELETE on {chain} refused'); END",
        ]
    return statements


def register_sqlite_function(sender=None, connection=None, **kwargs) -> None:
    """``connection_created``: give this SQLite connection the function its triggers ask."""
    if connection is None or connection.vendor != "sqlite":
        return
    wrapper = connection
    connection.connection.create_function(
        "mandate_evidence_bypass", 0, lambda: 1 if getattr(wrapper, _BYPASS_ATTR, False) else 0
    )


# --- install and bypass ----------------------------------------------------------------------------


def install(connection=None) -> int:
    """Create (or replace) the triggers on the tables that exist; returns how many statements ran."""
    connection = connection or default_connection
    existing = set(connection.introspection.table_names())
    tables = [t for t in evidence_tables() if t in existing]
    chain = chain_table() if chain_table() in existing else None
    if connection.vendor == "postgresql":
        statements = _pg_statements(tables, chain)
    elif connection.vendor == "sqlite":
        statements = _sqlite_statements(tables, chain)
    else:
        return 0
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    return len(statements)


def install_after_migrate(sender=None, using="default", **kwargs) -> None:
    from django.db import connections

    install(connections[using])


def connected_as_owner(connection=None) -> bool:
    """True when this connection may change evidence: it holds the owner role's privileges on
    PostgreSQL; always on SQLite (no roles — the bypass decides there)."""
    connection = connection or default_connection
    if connection.vendor != "postgresql":
        return True
    table = _table(EVIDENCE_MODELS[0])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_has_role(current_user, c.relowner, 'USAGE') FROM pg_class c WHERE c.oid = to_regclass(%s)",
            [table],
        )
        row = cursor.fetchone()
    return bool(row and row[0])


class NotOwner(PermissionError):
    pass


@contextmanager
def evidence_bypass(*, reason: str, connection=None):
    """Let this connection change evidence for the block: retention's purge and the test suite's
    flush. On PostgreSQL it only checks that the connection holds the owner role (the triggers let
    the owner through and nobody else); on SQLite it turns the connection's bypass on."""
    connection = connection or default_connection
    if not connected_as_owner(connection):
        raise NotOwner("changing evidence needs the database role that owns the tables (the one migrations run as)")
    log.info("evidence guard bypassed on %s: %s", connection.alias, reason)
    previous = getattr(connection, _BYPASS_ATTR, False)
    setattr(connection, _BYPASS_ATTR, True)
    try:
        yield
    finally:
        setattr(connection, _BYPASS_ATTR, previous)
