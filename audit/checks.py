"""Deploy checks of the audit trail (``manage.py check --deploy``): the application must not connect
as a role that could rewrite evidence, the evidence triggers must be in place, and checkpoints must
have somewhere outside the database to go."""

from __future__ import annotations

from django.conf import settings
from django.core import checks
from django.db import DatabaseError, connection

from audit import guard as audit_guard


@checks.register("mandate", deploy=True)
def audit_trail_is_protected(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    messages: list[checks.CheckMessage] = []
    if not settings.MANDATE_AUDIT_CHECKPOINT_FILE:
        messages.append(
            checks.Warning(
                "MANDATE_AUDIT_CHECKPOINT_FILE is empty: audit checkpoints have no external sink",
                hint="point it at an append-only file the database host cannot rewrite",
                id="mandate.W101",
            )
        )
    if connection.vendor != "postgresql":
        return messages
    table = audit_guard.evidence_tables()[0]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            superuser = bool(cursor.fetchone()[0])
            cursor.execute(
                "SELECT pg_has_role(current_user, c.relowner, 'USAGE'), "
                "(SELECT count(*) FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = 'mandate_guard_rows') "
                "FROM pg_class c WHERE c.oid = to_regclass(%s)",
                [table],
            )
            row = cursor.fetchone()
    except DatabaseError as exc:
        return [*messages, checks.Warning(f"could not check the database role: {exc}", id="mandate.W104")]
    owner, guarded = row if row is not None else (False, True)  # not migrated yet: nothing to own
    if superuser:
        messages.append(
            checks.Warning(
                "the application connects to PostgreSQL as a superuser: it could rewrite the audit trail",
                hint="connect as an application role without UPDATE/DELETE/TRUNCATE on evidence tables "
                "(manage.py grant_application_role; README: Least privilege)",
                id="mandate.W102",
            )
        )
    elif owner:
        messages.append(
            checks.Warning(
                "the application connects as the role that owns the tables: it could rewrite the audit trail "
                "or drop its triggers",
                hint="run migrations as the owner and the application as another role "
                "(manage.py grant_application_role; README: Least privilege)",
                id="mandate.W103",
            )
        )
    if not guarded:
        messages.append(
            checks.Warning(
                "the evidence tables have no append-only triggers",
                hint="run manage.py migrate as the owner role",
                id="mandate.W105",
            )
        )
    return messages
