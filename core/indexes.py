"""Index kinds and migration operations for the big tables (audit, activity).

``PrefixIndex`` serves ``LIKE 'prefix%'`` (Django's ``startswith``/``istartswith``): on PostgreSQL a
btree compares by the database collation, which cannot answer LIKE unless the index uses the
``text_pattern_ops`` operator class, so each expression gets it there (an ordered trailing column,
``F("id").desc()``, keeps its own); equality is served too; other databases get a plain
index over the same expressions (SQLite's LIKE is served or not by its own rules: correctness only).

``AddIndexConcurrently``/``RemoveIndexConcurrently`` build or drop an index without taking a write lock
on PostgreSQL (``CREATE INDEX CONCURRENTLY``, so the migration must be ``atomic = False``) and plainly
elsewhere, so the same migration runs on SQLite in tests and on a busy PostgreSQL in production.
"""

from __future__ import annotations

import copy

from django.db import migrations, models


class PrefixIndex(models.Index):
    """A btree over expressions that PostgreSQL can use for a ``LIKE 'prefix%'`` search."""

    OPCLASS = "text_pattern_ops"

    def create_sql(self, model, schema_editor, using="", **kwargs):
        if schema_editor.connection.vendor == "postgresql" and self.expressions:
            from django.contrib.postgres.indexes import OpClass
            from django.db.models.expressions import OrderBy
            from django.db.models.functions import Collate
            from django.db.models.indexes import IndexExpression

            # What django.contrib.postgres does when installed: an operator class is a wrapper of
            # the indexed expression, not a part of it (else it lands inside the parentheses).
            IndexExpression.register_wrappers(OrderBy, OpClass, Collate)
            index = copy.copy(self)
            # An ordered column after the searched ones (``F("id").desc()``) keeps its default class.
            index.expressions = tuple(
                expression if isinstance(expression, OrderBy) else OpClass(expression, name=self.OPCLASS)
                for expression in self.expressions
            )
            return models.Index.create_sql(index, model, schema_editor, using=using, **kwargs)
        return super().create_sql(model, schema_editor, using=using, **kwargs)


class AddIndexConcurrently(migrations.AddIndex):
    """``AddIndex`` that builds ``CONCURRENTLY`` on PostgreSQL (no write lock) and plainly elsewhere."""

    def describe(self):
        return f"Concurrently create index {self.index.name} on {self.model_name}"

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if schema_editor.connection.vendor == "postgresql":
            _refuse_inside_a_transaction(schema_editor)
            if _leftover_is_usable(schema_editor, self.index.name):
                return
            schema_editor.add_index(model, self.index, concurrently=True)
        else:
            schema_editor.add_index(model, self.index)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        model = from_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if schema_editor.connection.vendor == "postgresql":
            _refuse_inside_a_transaction(schema_editor)
            schema_editor.remove_index(model, self.index, concurrently=True)
        else:
            schema_editor.remove_index(model, self.index)


class RemoveIndexConcurrently(migrations.RemoveIndex):
    """``RemoveIndex`` that drops ``CONCURRENTLY`` on PostgreSQL and plainly elsewhere."""

    def describe(self):
        return f"Concurrently remove index {self.name} from {self.model_name}"

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = from_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        index = from_state.models[app_label, self.model_name_lower].get_index_by_name(self.name)
        if schema_editor.connection.vendor == "postgresql":
            _refuse_inside_a_transaction(schema_editor)
            schema_editor.remove_index(model, index, concurrently=True)
        else:
            schema_editor.remove_index(model, index)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        index = to_state.models[app_label, self.model_name_lower].get_index_by_name(self.name)
        if schema_editor.connection.vendor == "postgresql":
            _refuse_inside_a_transaction(schema_editor)
            schema_editor.add_index(model, index, concurrently=True)
        else:
            schema_editor.add_index(model, index)


def _leftover_is_usable(schema_editor, name: str) -> bool:
    """A concurrent build that was interrupted leaves an INVALID index behind (a migration without a
    transaction is not rolled back): drop it so a rerun builds it again; a valid one is kept."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = %s AND pg_catalog.pg_table_is_visible(c.oid)",
            [name],
        )
        row = cursor.fetchone()
    if row is None:
        return False
    if row[0]:
        return True
    schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(name)}")
    return False


def _refuse_inside_a_transaction(schema_editor) -> None:
    if schema_editor.connection.in_atomic_block:
        raise RuntimeError("Building an index concurrently needs a migration with atomic = False.")
