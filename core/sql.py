"""Raw-SQL mechanisms for the hot paths. Today: reads and inserts compiled once per process.

The ORM still builds the SQL and converts the values; only the per-call compilation is skipped.
On the credential endpoints, compiling a three-table SELECT cost more CPU than the ES256 signature,
so the two reads they make on every call go through here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model, QuerySet

M = TypeVar("M", bound=Model)


class PreparedValues:
    """``build(value)`` returns a ``values_list`` queryset with exactly one parameter (the lookup
    value); ``fetch(value)`` runs its SQL with a fresh value and returns the first row as a dict."""

    def __init__(self, build: Callable[[Any], QuerySet], *, sample: object, key_share: bool = False):
        self._build = build
        self._sample = sample
        self._key_share = key_share
        self._compiled: dict[str, tuple] = {}
        self._lock = threading.Lock()

    def _compile(self, alias: str) -> tuple:
        compiled = self._compiled.get(alias)
        if compiled is None:
            queryset = self._build(self._sample)
            compiler = queryset.query.get_compiler(using=alias)
            sql, params = compiler.as_sql()
            if len(params) != 1:
                raise ValueError("a prepared read takes exactly one parameter")
            converters = compiler.get_converters([column for column, _, _ in compiler.select])
            names = list(queryset.query.values_select)
            compiled = (sql, list(converters.items()), names, queryset.model._meta.pk)
            with self._lock:
                self._compiled[alias] = compiled
        return compiled

    def fetch(self, value, *, using: str = DEFAULT_DB_ALIAS) -> dict | None:
        """The first row for ``value`` (the primary key the query filters on), or None."""
        connection = connections[using]
        sql, converters, names, pk = self._compile(using)
        if self._key_share and connection.vendor == "postgresql":
            sql += " FOR KEY SHARE"  # a lock the ORM does not spell; see identities/issuance.py
        with connection.cursor() as cursor:
            cursor.execute(sql, [pk.get_db_prep_value(value, connection)])
            rows = cursor.fetchmany(1)
        if not rows:
            return None
        row = list(rows[0])
        for position, (functions, expression) in converters:  # as SQLCompiler.apply_converters
            for convert in functions:
                row[position] = convert(row[position], expression, connection)
        return dict(zip(names, row, strict=True))


def model_from(model: type[M], data: dict, *, using: str = DEFAULT_DB_ALIAS) -> M:
    """A model instance as loaded from the database with only ``data``'s columns (by attname);
    any other field is deferred and would load on access."""
    fields = [f for f in model._meta.concrete_fields if f.attname in data]
    return model.from_db(using, {f.attname for f in fields}, [data[f.attname] for f in fields])


_inserts: dict[tuple[type[Model], str], tuple[str, list]] = {}


def insert(instance: Model, *, using: str = DEFAULT_DB_ALIAS) -> None:
    """INSERT ``instance`` (its primary key already set) as ``save(force_insert=True)`` would:
    every concrete field through its own ``pre_save`` and ``get_db_prep_save``, the SQL built once
    per model and database. No model signals are sent (the project connects none); a duplicate key
    raises IntegrityError as the ORM's insert does."""
    model = type(instance)
    connection = connections[using]
    cached = _inserts.get((model, using))
    if cached is None:
        fields = list(model._meta.concrete_fields)
        if any(field.db_returning for field in fields):
            raise ValueError("prepared.insert is for models whose primary key the caller sets")
        quote = connection.ops.quote_name
        sql = (
            f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "  # noqa: S608
            f"VALUES ({', '.join(['%s'] * len(fields))})"
        )
        cached = (sql, fields)
        _inserts[(model, using)] = cached
    sql, fields = cached
    values = [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
    instance._state.adding = False
    instance._state.db = using
