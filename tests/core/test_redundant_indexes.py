"""No table of ours carries an index that another index on it already serves.

Every index is rewritten on every INSERT (and on every UPDATE that is not HOT), so a redundant one
is pure cost on the hot paths: each recorded decision inserts an activity row. An index is
redundant when it is a plain (not unique, not partial) b-tree whose columns, in order, are the
leading columns of another b-tree on the same table, scanned in the same or the exactly reverse
direction; PostgreSQL answers equality, ranges and that ordering from the longer one.
Django adds a single-column index to every ForeignKey unless ``db_index=False``; where a composite
index leads with the key, the model says ``db_index=False``.
"""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import connection

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

OUR_APPS = ("accounts", "audit", "identities", "tasks", "posture", "console")

# (table, index, unique, partial, [(column, descending), …]) for every b-tree on the given tables.
_INDEXES_SQL = """
SELECT t.relname, i.relname, x.indisunique, x.indpred IS NOT NULL,
       array_agg(a.attname ORDER BY k.n), array_agg((x.indoption[k.n - 1] & 1) = 1 ORDER BY k.n)
FROM pg_index x
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_am am ON am.oid = i.relam AND am.amname = 'btree'
CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, n)
JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
WHERE t.relname = ANY(%s) AND x.indexprs IS NULL
GROUP BY t.relname, i.relname, x.indisunique, x.indpred
"""


def _our_tables() -> list[str]:
    return [model._meta.db_table for label in OUR_APPS for model in apps.get_app_config(label).get_models()]


def _serves(longer: list[tuple[str, bool]], shorter: list[tuple[str, bool]]) -> bool:
    if len(longer) <= len(shorter) or [c for c, _ in longer[: len(shorter)]] != [c for c, _ in shorter]:
        return False
    flips = {a != b for (_, a), (_, b) in zip(longer, shorter, strict=False)}
    return len(flips) == 1  # every direction the same, or every one reversed


def redundant_indexes() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(_INDEXES_SQL, [_our_tables()])
        rows = cursor.fetchall()
    by_table: dict[str, list[tuple[str, bool, bool, list[tuple[str, bool]]]]] = {}
    for table, name, unique, partial, columns, descending in rows:
        by_table.setdefault(table, []).append((name, unique, partial, list(zip(columns, descending, strict=True))))
    found = []
    for table, indexes in sorted(by_table.items()):
        for name, unique, partial, columns in indexes:
            if unique or partial:
                continue
            for other, _, other_partial, other_columns in indexes:
                if other != name and not other_partial and _serves(other_columns, columns):
                    found.append(f"{table}.{name} {[c for c, _ in columns]} is served by {other}")
                    break
    return found


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: reads PostgreSQL's catalogue")


def test_no_index_is_served_by_another_on_the_same_table():
    assert redundant_indexes() == []


def test_the_check_finds_an_index_another_one_serves():
    """The check itself: an index on the activity table's agent column, which the (agent, id)
    index already serves, is reported; one on a column no other index leads with is not."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE INDEX probe_agent_idx ON tasks_activityevent (agent_id)")
        cursor.execute("CREATE INDEX probe_scope_idx ON tasks_activityevent (scope)")
    found = redundant_indexes()
    assert any(line.startswith("tasks_activityevent.probe_agent_idx") for line in found)
    assert not any("probe_scope_idx" in line.split(" is served by ")[0] for line in found)


def test_an_index_in_another_order_is_not_counted_as_served():
    assert not _serves([("a", False), ("b", True)], [("a", False), ("b", False)])
    assert _serves([("a", True), ("b", True)], [("a", False)])
    assert _serves([("a", False), ("b", True), ("c", False)], [("a", True), ("b", False)])
