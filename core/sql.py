"""Raw SQL for the hot paths: every mechanism the application uses beyond the ORM, in one place.

Each has a PostgreSQL fast path and a portable path (SQLite in development and tests), chosen by
``fast(connection)``; functions take ``portable=True`` to force the portable path, which is how
tests/core/test_sql_paths.py checks on PostgreSQL that both give the same answers.

- reads and inserts compiled once per process (``PreparedValues``, ``insert``): the ORM still
  builds the SQL and converts values, only the per-call compilation is skipped — on the credential
  endpoints compiling a three-table SELECT cost more CPU than the ES256 signature; a
  ``PreparedValues`` read is also prepared on the server (``prepared_cursor``);
- ``prepared_cursor``: statements PostgreSQL plans once per connection (``statement_cursor``: that
  cursor on PostgreSQL, the ordinary one elsewhere);
- ``key_shared``: a queryset read under ``FOR KEY SHARE``, a lock the ORM does not spell;
- ``copy_rows``: many rows in one statement (COPY on PostgreSQL);
- ``insert_rows_returning_ids``: many rows of plain values in one INSERT of one parameter, their
  generated ids returned (``insert_returning_ids``: the same for model instances, ids set on them);
- ``locked_rows``: rows by primary key, locked ``FOR UPDATE`` in key order, in one statement;
- ``update_by_key``: many rows updated to their own values in one statement;
- ``insert_unless_present``: an INSERT that reports a duplicate key instead of raising;
- ``transaction_lock``: a transaction-scoped advisory lock (SQLite's writers are serialised anyway);
  ``PreparedValues(turn=…)`` takes the same lock inside a read, saving the round trip;
- ``count_hits``: shared counters that each add one and answer their new counts in one statement
  (UPSERT), ``forget_counts_before`` and ``sweep_counts``: their clean-up (core/ratelimit.py).

Table and column names come from the models, values always travel as parameters.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import JSONField, Model, QuerySet

M = TypeVar("M", bound=Model)


class PreparedValues:
    """``build(value)`` returns a ``values_list`` queryset with exactly one parameter (the lookup
    value, prepared as the model's primary key is, or as the field named ``key``); ``fetch(value)``
    runs its SQL with a fresh value and returns the first row as a dict, ``fetch_all`` every row.
    On PostgreSQL the statement is prepared once per connection (``prepared_cursor``).

    ``head=(name, sql)``: one more column read in the same round trip, before the queryset's,
    returned under ``name``: ``sql()`` gives its expression (built once, when the read is first
    compiled), and each ``fetch(value, head_params=[…])`` its parameters (introspection reads
    whether its remembered caller may still ask with the credential it looks up)."""

    def __init__(
        self,
        build: Callable[[Any], QuerySet],
        *,
        sample: object,
        key_share: bool = False,
        key: str | None = None,
        turn: str | None = None,
        head: tuple[str, Callable[[], str]] | None = None,
    ):
        if head is not None and turn is not None:
            raise ValueError("a read takes a turn or reads a head column, not both")
        self._build = build
        self._sample = sample
        self._key_share = key_share
        # On PostgreSQL the read also takes ``transaction_lock(turn + str(value))`` for each row it
        # finds, in the same round trip (evaluated with the row, before its row lock is taken).
        self._turn = turn
        self._key = key  # the field the lookup value is prepared as (default: the primary key)
        self._head = head
        self._compiled: dict[str, tuple] = {}
        self._joined: dict[str, str] = {}  # counted_with's statements, by the statement joined to
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
            meta = queryset.model._meta
            connection = connections[alias]
            turn = self._turn is not None and fast(connection)
            if turn:
                if not sql.startswith("SELECT "):
                    raise ValueError("a read that takes a turn is a plain SELECT")
                sql = f"SELECT {_ADVISORY_LOCK}, {sql.removeprefix('SELECT ')}"
            if self._head is not None:
                if not sql.startswith("SELECT "):
                    raise ValueError("a read with a head column is a plain SELECT")
                sql = f"SELECT {self._head[1]()}, {sql.removeprefix('SELECT ')}"
            if self._key_share and connection.vendor == "postgresql":
                sql += " FOR KEY SHARE"  # a lock the ORM does not spell; see identities/issuance.py
            compiled = (
                sql,
                list(converters.items()),
                names,
                meta.pk if self._key is None else meta.get_field(self._key),
                turn,
            )
            with self._lock:
                self._compiled[alias] = compiled
        return compiled

    def fetch(self, value, *, using: str = DEFAULT_DB_ALIAS, head_params: Sequence[Any] = ()) -> dict | None:
        """The first row for ``value`` (the primary key, or ``key``, the query filters on), or None."""
        rows = self._rows(value, using, limit=1, head_params=head_params)
        return rows[0] if rows else None

    def fetch_all(self, value, *, using: str = DEFAULT_DB_ALIAS) -> list[dict]:
        """Every row for ``value`` (a join to many rows gives one row each)."""
        return self._rows(value, using, limit=None)

    def _rows(self, value, using: str, *, limit: int | None, head_params: Sequence[Any] = ()) -> list[dict]:
        connection = connections[using]
        sql, _, _, pk, turn = self._compile(using)
        params = [pk.get_db_prep_value(value, connection)]
        if turn:
            params.insert(0, f"{self._turn}{value}")
        head = self._head is not None
        if head:
            params[:0] = head_params
        # Prepared on PostgreSQL: these reads join three and four tables, and planning one cost the
        # server four to six times what running it did (a caller's roles 290 µs planned, 60 µs
        # prepared; a credential with its instance, agent and envelope 410 µs against 70).
        with statement_cursor(using) as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchmany(limit) if limit else cursor.fetchall()
        return [self._convert(found, connection) for found in rows]

    def _convert(self, found: Sequence[Any], connection: BaseDatabaseWrapper) -> dict:
        """One row as the queryset's values (and the head column, if any), converted as the ORM does."""
        _, converters, names, _, turn = self._compile(connection.alias)
        head = self._head is not None
        row = list(found[1:] if turn or head else found)
        for position, (functions, expression) in converters:  # as SQLCompiler.apply_converters
            for convert in functions:
                row[position] = convert(row[position], expression, connection)
        out = dict(zip(names, row, strict=True))
        if head:
            out[self._head[0]] = found[0]  # type: ignore[index]
        return out

    def counted_with(
        self,
        count_sql: str,
        count_params: list,
        value,
        *,
        head_params: Sequence[Any] = (),
        using: str = DEFAULT_DB_ALIAS,
    ) -> tuple[str, list]:
        """This read's first row for ``value`` joined to a statement that returns rows of its own
        (``count_hits_and_fetch``): ``WITH counted AS (count_sql) SELECT counted.*, r.* FROM counted
        LEFT JOIN (SELECT 1, <the read's columns> … LIMIT 1) r ON true``, so every counted row
        carries the read's row, or NULLs where it found none (the ``1`` tells which). PostgreSQL
        only; not a locking read."""
        connection = connections[using]
        sql, _, _, pk, turn = self._compile(using)
        if not sql.startswith("SELECT "):
            raise ValueError("a read that rides on another statement is a plain SELECT")
        if turn or self._key_share:
            raise ValueError("a locking read does not ride on another statement")
        joined = self._joined.get(count_sql)
        if joined is None:
            joined = (
                f"WITH counted AS ({count_sql}) SELECT counted.*, r.* "  # noqa: S608 - built from our own SQL
                f"FROM counted LEFT JOIN (SELECT 1, {sql.removeprefix('SELECT ')} LIMIT 1) r ON true"
            )
            self._joined[count_sql] = joined
        return joined, [*count_params, *head_params, pk.get_db_prep_value(value, connection)]


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
    with statement_cursor(using) as cursor:
        cursor.execute(sql, values)
    instance._state.adding = False
    instance._state.db = using


def fast(connection: BaseDatabaseWrapper, *, portable: bool = False) -> bool:
    """Whether to take the PostgreSQL fast path."""
    return connection.vendor == "postgresql" and not portable


_PreparingCursor: Any = None


def prepared_cursor(using: str = DEFAULT_DB_ALIAS) -> Any:
    """A Django cursor whose statements PostgreSQL prepares once per connection (planning the
    decisions' four-table load cost more server CPU than running it). Django disables prepared
    statements by default (for transaction-mode poolers such as PgBouncer < 1.21); statements run
    through this cursor opt in, so run such a pooler in session mode, or a version that tracks
    prepared statements. Each is planned once, generically (the backend sets ``plan_cache_mode``,
    core/postgresql/base.py). PostgreSQL only."""
    global _PreparingCursor
    connection = connections[using]
    if _PreparingCursor is None:
        import psycopg

        class Preparing(psycopg.Cursor):
            def execute(self, query: Any, params: Any = None, *, prepare: Any = None, binary: Any = None) -> Any:
                return super().execute(query, params, prepare=True, binary=binary)

        _PreparingCursor = Preparing
    connection.ensure_connection()
    raw = _PreparingCursor(connection.connection)
    return connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)


def statement_cursor(using: str = DEFAULT_DB_ALIAS) -> Any:
    """The cursor for a statement a hot path sends again and again: ``prepared_cursor`` on
    PostgreSQL, the ordinary cursor elsewhere. Parsing and planning the mint's inserts, its live
    count and its audit row cost PostgreSQL about as much as running them."""
    connection = connections[using]
    return prepared_cursor(using) if fast(connection) else connection.cursor()


def _key_share_sql(nowait: bool = False, skip_locked: bool = False, of: tuple = (), no_key: bool = False) -> str:
    return "FOR KEY SHARE"


def key_shared(queryset: QuerySet, *, portable: bool = False) -> list:
    """Evaluate ``queryset`` with ``FOR KEY SHARE`` on every row it reads (PostgreSQL): writers that
    change a key wait, other readers and ordinary updates do not. ``connection.ops`` belongs to this
    thread's connection alone, so swapping its ``for_update_sql`` for one query affects no other
    request. Portably the rows are read plainly: SQLite's write transactions are serialised already."""
    connection = connections[queryset.db]
    if not fast(connection, portable=portable):
        return list(queryset)
    ops = connection.ops
    ops.for_update_sql = _key_share_sql  # type: ignore[method-assign]
    try:
        return list(queryset.select_for_update())
    finally:
        del ops.for_update_sql


def copy_rows(
    model: type[Model],
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    using: str = DEFAULT_DB_ALIAS,
    portable: bool = False,
) -> None:
    """Insert ``rows`` (values in ``columns`` order, by attname) in one statement: COPY on
    PostgreSQL, a multi-row INSERT through ``bulk_create`` elsewhere. A JSON column's value may come
    as its JSON text already (what COPY wants); the portable path parses it back."""
    connection = connections[using]
    if fast(connection, portable=portable):
        quote = connection.ops.quote_name
        names = ", ".join(quote(model._meta.get_field(column).column) for column in columns)
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(f"COPY {quote(model._meta.db_table)} ({names}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        return
    json_columns = {
        position for position, column in enumerate(columns) if isinstance(model._meta.get_field(column), JSONField)
    }
    objs = []
    for row in rows:
        values = list(row)
        for position in json_columns:
            if isinstance(values[position], str):
                values[position] = json.loads(values[position])
        objs.append(model(**dict(zip(columns, values, strict=True))))
    if objs:
        model._default_manager.using(using).bulk_create(objs, batch_size=1000)


_recordset_inserts: dict[tuple[type[Model], tuple[str, ...], str], tuple[str, bool]] = {}


def _recordset_insert(model: type[Model], columns: Sequence[str], connection: BaseDatabaseWrapper) -> tuple[str, bool]:
    """The INSERT … FROM jsonb_to_recordset statement for ``columns`` (by attname), and whether every
    column is named as its attname (then rows keyed by attname are already what it reads)."""
    key = (model, tuple(columns), connection.alias)
    cached = _recordset_inserts.get(key)
    if cached is None:
        quote = connection.ops.quote_name
        fields = [model._meta.get_field(column) for column in columns]
        names = ", ".join(quote(f.column) for f in fields)
        typed = ", ".join(f"{quote(f.column)} {f.db_type(connection)}" for f in fields)
        statement = (
            f"INSERT INTO {quote(model._meta.db_table)} ({names}) "  # noqa: S608 - names from the model
            f"SELECT {names} FROM jsonb_to_recordset(%s::jsonb) AS r({typed}) "
            f"RETURNING {quote(model._meta.pk.column)}"
        )
        cached = (statement, all(f.column == column for f, column in zip(fields, columns, strict=True)))
        _recordset_inserts[key] = cached
    return cached


def insert_returning_ids(
    objs: Sequence[Model], columns: Sequence[str], *, using: str = DEFAULT_DB_ALIAS, portable: bool = False
) -> None:
    """INSERT ``objs`` (instances of one model whose primary key the database generates) in one
    statement and set each one's ``pk``: ``insert_rows_returning_ids`` for instances. Elsewhere
    ``bulk_create`` itself."""
    if not objs:
        return
    model = type(objs[0])
    connection = connections[using]
    if not fast(connection, portable=portable):
        model._default_manager.using(using).bulk_create(objs)
        return
    rows = [{column: getattr(obj, column) for column in columns} for obj in objs]
    ids = insert_rows_returning_ids(model, rows, columns, using=using)
    pk = model._meta.pk.attname
    for obj, found in zip(objs, ids, strict=True):
        setattr(obj, pk, found)
        obj._state.adding = False
        obj._state.db = using


def insert_rows_returning_ids(
    model: type[Model],
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    *,
    using: str = DEFAULT_DB_ALIAS,
    portable: bool = False,
) -> list[Any]:
    """INSERT ``rows`` (plain values by attname, one for every name in ``columns`` — every column
    without a database default; other keys are ignored) into ``model``'s table in one statement,
    and return the generated primary keys in ``rows``' order. No model instance is built on
    PostgreSQL: building one per row cost more CPU than the insert.

    On PostgreSQL the rows travel as ONE parameter, a JSON array that ``jsonb_to_recordset`` turns
    back into typed columns: the statement's text is the same for any number of rows, so psycopg
    parses it once per process — a VALUES list of 800 placeholders was re-parsed on every batch and
    cost more than the insert — and no field's preparation runs per value; PostgreSQL prepares it
    once per connection. The ids come from the sequence in the order the rows are read, so the
    ascending ids map to ``rows`` in order.
    Elsewhere ``bulk_create`` of instances built from the rows' ``columns``."""
    if not rows:
        return []
    connection = connections[using]
    if not fast(connection, portable=portable):
        objs = [model(**{column: row[column] for column in columns}) for row in rows]
        model._default_manager.using(using).bulk_create(objs)
        return [obj.pk for obj in objs]
    statement, by_attname = _recordset_insert(model, columns, connection)
    if not by_attname:
        fields = [model._meta.get_field(column) for column in columns]
        rows = [{f.column: row[column] for f, column in zip(fields, columns, strict=True)} for row in rows]
    payload = json.dumps(rows, default=_as_text_once(), separators=(",", ":"))
    with prepared_cursor(using) as cursor:
        cursor.execute(statement, [payload])
        return sorted(found for (found,) in cursor.fetchall())


def _as_text_once() -> Callable[[Any], str]:
    """``json.dumps``' ``default`` for one payload: timestamps and UUIDs as their text, which
    PostgreSQL reads back into the declared types. A batch's rows share their objects (one ``now``,
    one credential's ids), so each object is converted once, found again by identity; the rows
    keep every object alive while the payload is written, so no identity is reused meanwhile."""
    text: dict[int, str] = {}

    def as_text(value: Any) -> str:
        found = text.get(id(value))
        if found is None:
            found = text[id(value)] = str(value)
        return found

    return as_text


_locked_reads: dict[tuple[type[Model], tuple[str, ...], str], tuple[str, list]] = {}


def locked_rows(
    model: type[Model],
    pks: Iterable[Any],
    fields: Sequence[str],
    *,
    using: str = DEFAULT_DB_ALIAS,
    portable: bool = False,
) -> list[dict[str, Any]]:
    """The rows of ``model`` whose primary key is in ``pks``, locked ``FOR UPDATE`` in primary-key
    order (two callers locking overlapping sets take the rows in the same order and cannot
    deadlock), as dicts of ``fields`` plus ``"pk"``: one statement written once per process on
    PostgreSQL (``= ANY(%s)``); the ORM's ``select_for_update`` elsewhere."""
    pks = list(pks)
    if not pks:
        return []
    connection = connections[using]
    if not fast(connection, portable=portable):
        query = model._default_manager.using(using).select_for_update().filter(pk__in=pks).order_by("pk")
        return list(query.values("pk", *fields))
    cached = _locked_reads.get((model, tuple(fields), using))
    if cached is None:
        quote = connection.ops.quote_name
        meta = model._meta
        selected = [meta.pk, *(meta.get_field(name) for name in fields)]
        key = quote(meta.pk.column)
        sql = (
            f"SELECT {', '.join(quote(field.column) for field in selected)} "  # noqa: S608 - names from the model
            f"FROM {quote(meta.db_table)} WHERE {key} = ANY(%s) ORDER BY {key} FOR UPDATE"
        )
        cached = (sql, [(n, field) for n, field in enumerate(selected) if hasattr(field, "from_db_value")])
        _locked_reads[(model, tuple(fields), using)] = cached
    sql, converted = cached
    pk = model._meta.pk
    with prepared_cursor(using) as cursor:
        cursor.execute(sql, [[pk.get_db_prep_value(value, connection) for value in pks]])
        found = cursor.fetchall()
    names = ["pk", *fields]
    rows = []
    for values in found:
        values = list(values)
        for n, field in converted:
            values[n] = field.from_db_value(values[n], None, connection)
        rows.append(dict(zip(names, values, strict=True)))
    return rows


def update_by_key(
    model: type[Model],
    key: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    using: str = DEFAULT_DB_ALIAS,
    portable: bool = False,
) -> None:
    """Set each row's ``columns`` to its own values, the row found by ``key`` (each item of ``rows``
    is the key's value then the columns'): one ``UPDATE … FROM (VALUES …)`` on PostgreSQL, one
    UPDATE per row elsewhere."""
    if not rows:
        return
    connection = connections[using]
    if not fast(connection, portable=portable):
        manager = model._default_manager.using(using)
        for row in rows:
            manager.filter(**{key: row[0]}).update(**dict(zip(columns, row[1:], strict=True)))
        return
    quote = connection.ops.quote_name
    fields = [model._meta.get_field(name) for name in (key, *columns)]
    casts = ",".join(f"%s::{field.db_type(connection)}" for field in fields)
    names = [quote(field.column) for field in fields]
    sql = (
        f"UPDATE {quote(model._meta.db_table)} AS t SET "  # noqa: S608 - names from the model
        + ", ".join(f"{name} = v.{name}" for name in names[1:])
        + f" FROM (VALUES {','.join([f'({casts})'] * len(rows))}) AS v({', '.join(names)}) "
        f"WHERE t.{names[0]} = v.{names[0]}"
    )
    # Prepared: the text differs only by the number of rows, and a batch updates one or a few.
    with prepared_cursor(using) as cursor:
        cursor.execute(sql, [value for row in rows for value in row])


def insert_unless_present(
    model: type[Model], values: dict[str, Any], *, key: str, using: str = DEFAULT_DB_ALIAS
) -> bool:
    """INSERT one row unless a row with the same ``key`` exists; True when this call inserted it.
    One statement (``ON CONFLICT DO NOTHING``, which PostgreSQL and SQLite both speak), so no
    exception and no savepoint: it can run inside a caller's transaction on either."""
    connection = connections[using]
    quote = connection.ops.quote_name
    fields = [model._meta.get_field(name) for name in values]
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "  # noqa: S608
        f"VALUES ({', '.join(['%s'] * len(fields))}) "
        f"ON CONFLICT ({quote(model._meta.get_field(key).column)}) DO NOTHING"
    )
    params = [field.get_db_prep_save(values[field.name], connection) for field in fields]
    with statement_cursor(using) as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount == 1


_ADVISORY_LOCK = "pg_advisory_xact_lock(hashtextextended(%s, 0))"


def transaction_lock(name: str, *, using: str = DEFAULT_DB_ALIAS) -> None:
    """Take a transaction-scoped advisory lock on ``name`` (PostgreSQL): callers naming the same
    thing take turns until their transactions end. Portably nothing to do: SQLite has one writer.
    (``PreparedValues(turn=…)`` takes the same lock within a read.)"""
    connection = connections[using]
    if fast(connection):
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {_ADVISORY_LOCK}", [name])


# --- rate-limit counters (core/ratelimit.py) -------------------------------------------------------
# The table is console.models.RateCounter's (core has no models of its own; the layers let console
# import this name, never the other way round). On PostgreSQL it is UNLOGGED (console migration
# 0005): a counter is worth nothing after a crash, and a transaction that wrote only an unlogged
# table commits without waiting for a WAL flush, so counting costs no durable commit.

RATE_COUNTER_TABLE = "mandate_rate_counter"
_count_sql: dict[tuple[str, int], str] = {}


def count_hits(keys: Sequence[str], slot: int, *, expires: int, using: str = DEFAULT_DB_ALIAS) -> dict[str, int]:
    """Add one to the count of each of ``keys`` in window ``slot`` and return each key's new count:
    ONE statement, ``INSERT … VALUES (…), (…) ON CONFLICT (key, slot) DO UPDATE SET n = n + 1
    RETURNING key, n`` (PostgreSQL, and SQLite from 3.35). Atomic under concurrency: parallel
    callers on one key serialise on its row, and each sees its own count; the rows are written in
    key order whatever the caller's order, so callers counting overlapping keys lock them in one
    order and never deadlock. ``expires`` (epoch seconds) is when ``sweep_counts`` may delete the
    rows. Inside a caller's transaction the rows stay locked until that transaction ends; the OAuth
    views count in autocommit, before any transaction of theirs begins."""
    sql, params = _count_statement(keys, slot, expires, connections[using])
    with statement_cursor(using) as cursor:
        cursor.execute(sql, params)
        return {key: int(n) for key, n in cursor.fetchall()}


def count_hits_and_fetch(
    keys: Sequence[str],
    slot: int,
    *,
    expires: int,
    read: PreparedValues,
    value: Any,
    head_params: Sequence[Any] = (),
    using: str = DEFAULT_DB_ALIAS,
) -> tuple[dict[str, int], dict | None]:
    """``count_hits`` and ``read.fetch(value, head_params=…)`` in one round trip: on PostgreSQL ONE
    statement, the read joined to the UPSERT's returned rows (``PreparedValues.counted_with``); the
    read's snapshot is the statement's, taken before the counts change, which it does not read.
    Elsewhere (SQLite cannot put an INSERT in a WITH) the two statements one after the other."""
    connection = connections[using]
    if not fast(connection):
        return count_hits(keys, slot, expires=expires, using=using), read.fetch(
            value, using=using, head_params=head_params
        )
    count_sql, count_params = _count_statement(keys, slot, expires, connection)
    sql, params = read.counted_with(count_sql, count_params, value, head_params=head_params, using=using)
    with statement_cursor(using) as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    counts = {key: int(n) for key, n, *_ in rows}
    first = rows[0] if rows else None
    found = None if first is None or first[2] is None else read._convert(first[3:], connection)
    return counts, found


def _count_statement(keys: Sequence[str], slot: int, expires: int, connection: BaseDatabaseWrapper) -> tuple[str, list]:
    ordered = sorted(set(keys))  # one row per key: ON CONFLICT DO UPDATE may not touch a row twice
    sql = _count_sql.get((connection.vendor, len(ordered)))
    if sql is None:
        q = connection.ops.quote_name
        table = q(RATE_COUNTER_TABLE)
        rows = ", ".join(["(%s, %s, 1, %s)"] * len(ordered))
        sql = (
            f"INSERT INTO {table} ({q('key')}, {q('slot')}, {q('n')}, {q('expires')}) "  # noqa: S608 - fixed names
            f"VALUES {rows} ON CONFLICT ({q('key')}, {q('slot')}) "
            f"DO UPDATE SET {q('n')} = {table}.{q('n')} + 1 RETURNING {q('key')}, {q('n')}"
        )
        _count_sql[(connection.vendor, len(ordered))] = sql
    params: list[object] = []
    for key in ordered:
        params += [key, slot, expires]
    return sql, params


def forget_counts_before(key: str, slot: int, *, using: str = DEFAULT_DB_ALIAS) -> int:
    """Delete ``key``'s counts of windows before ``slot`` (run when a new window's first hit rolls
    the key over); returns how many rows went."""
    connection = connections[using]
    q = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {q(RATE_COUNTER_TABLE)} WHERE {q('key')} = %s AND {q('slot')} < %s",  # noqa: S608
            [key, slot],
        )
        return cursor.rowcount


def sweep_counts(now: float, *, using: str = DEFAULT_DB_ALIAS) -> int:
    """Delete every count whose window ended before ``now`` (epoch seconds): keys that never came
    back to roll over. Returns how many rows went."""
    connection = connections[using]
    q = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {q(RATE_COUNTER_TABLE)} WHERE {q('expires')} <= %s", [int(now)])  # noqa: S608
        return cursor.rowcount
