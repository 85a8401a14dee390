"""``manage.py grant_application_role ROLE``: give the application's PostgreSQL role what it needs and
nothing that could rewrite evidence. Run it as the owner role, after every ``migrate``.

The role reads and writes the ordinary tables, may only read and append to the evidence tables
(the audit trail, its jti index, the activity record), and may advance audit chain heads (UPDATE
on the head table, where a trigger lets a head only move forward). It owns nothing, so it cannot
drop or disable the triggers. ``--print`` shows the statements instead of running them.
"""

from __future__ import annotations

import re

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from audit.guard import chain_table, connected_as_owner, evidence_tables

_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def grant_statements(role: str) -> list[str]:
    q = connection.ops.quote_name
    evidence = ", ".join(q(t) for t in evidence_tables())
    chain = q(chain_table())
    return [
        f"GRANT CONNECT ON DATABASE {q(connection.settings_dict['NAME'])} TO {q(role)}",
        f"GRANT USAGE ON SCHEMA public TO {q(role)}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {q(role)}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {q(role)}",
        f"REVOKE UPDATE, DELETE, TRUNCATE, TRIGGER, REFERENCES ON {evidence} FROM {q(role)}",
        f"REVOKE DELETE, TRUNCATE, TRIGGER, REFERENCES ON {chain} FROM {q(role)}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {q(role)}",
    ]


class Command(BaseCommand):
    help = "Grant a PostgreSQL role the application's least privileges (no UPDATE/DELETE/TRUNCATE on evidence)."

    def add_arguments(self, parser):
        parser.add_argument("role", help="the application's role (it must exist and must not own the tables)")
        parser.add_argument("--print", action="store_true", help="print the statements instead of running them")

    def handle(self, *args, **options):
        role = options["role"]
        if not _ROLE.match(role):
            raise CommandError("role: lower-case letters, digits and _ only")
        if connection.vendor != "postgresql":
            raise CommandError("grant_application_role is for PostgreSQL (SQLite has no roles)")
        statements = grant_statements(role)
        if options["print"]:
            self.stdout.write(";\n".join(statements) + ";")
            return
        if not connected_as_owner():
            raise CommandError("run this as the role that owns the tables (the one migrations run as)")
        with connection.cursor() as cursor:
            cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [role])
            row = cursor.fetchone()
            if row is None:
                raise CommandError(f"role {role} does not exist (CREATE ROLE {role} LOGIN PASSWORD '…' first)")
            cursor.execute(
                "SELECT pg_has_role(%s, c.relowner, 'USAGE') FROM pg_class c WHERE c.oid = to_regclass(%s)",
                [role, evidence_tables()[0]],
            )
            owner = cursor.fetchone()
        if row[0] or (owner and owner[0]):
            raise CommandError(f"role {role} is a superuser or holds the owner's privileges: it could rewrite evidence")
        with transaction.atomic(), connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
        self.stdout.write(f"granted {role} the application's privileges; evidence tables are read and append only")
