"""core/sql.py: every raw-SQL mechanism gives the same answers on its PostgreSQL fast path and its
portable path. On PostgreSQL each test runs both paths on the same data and compares; on SQLite the
portable path alone runs, so the same assertions still hold there."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import psycopg
import pytest
from django.db import connection, transaction
from django.utils import timezone

from audit.models import AuditChain
from core import sql
from identities.models import Credential, Instance, UsedAssertion
from tasks import sweeps
from tasks.models import ActivityEvent
from tests.helpers.factories import make_agent, make_instance
from tests.tasks.test_sweeps import approved_envelope, credential

pytestmark = pytest.mark.django_db


def both_paths():
    """The paths this database has: both on PostgreSQL, the portable one elsewhere."""
    return [False, True] if connection.vendor == "postgresql" else [True]


def _other_session():
    """A second connection to the test database, in autocommit, to see this one's locks."""
    settings = connection.settings_dict
    return psycopg.connect(
        host=settings["HOST"] or None,
        port=settings["PORT"] or None,
        dbname=settings["NAME"],
        user=settings["USER"],
        password=settings["PASSWORD"] or None,
        autocommit=True,
    )


def _rolled_back(function):
    """Run ``function`` in a transaction that is rolled back, returning what it returned."""
    with transaction.atomic():
        result = function()
        transaction.set_rollback(True)
    return result


def test_copy_rows_stores_the_same_rows_either_way(owner):
    instance = make_instance(make_agent(owner))
    now = timezone.now().replace(microsecond=123456)
    # Every column without a database default (COPY fills no Django defaults), as activity stores them.
    columns = (
        "kind", "agent_id", "instance_id", "envelope_id", "jti", "scope", "resource", "allow", "reason",
        "outcome", "drift", "policy_version", "details", "occurred_at", "recorded_at", "reported_by",
    )  # fmt: skip
    rows = [
        ("tool_call", instance.agent_id, instance.id, None, "", "github:read", "repo:acme/api", None, "", "ok",
         True, "", json.dumps({"n": 1}), now, now, "x"),
        ("secret_access", None, None, None, "", "", "", None, "", "", False, "", json.dumps({"nested": [1, 2]}),
         now, now, ""),
    ]  # fmt: skip

    def store(portable: bool):
        def run():
            sql.copy_rows(ActivityEvent, columns, rows, portable=portable)
            return sorted(ActivityEvent.objects.values_list(*columns), key=repr)

        return _rolled_back(run)

    stored = [store(portable) for portable in both_paths()]
    assert all(result == stored[0] for result in stored)
    details = columns.index("details")
    assert sorted(json.dumps(row[details]) for row in stored[0]) == ['{"n": 1}', '{"nested": [1, 2]}']
    assert len(stored[0]) == 2 and all(row[columns.index("occurred_at")] == now for row in stored[0])


def test_update_by_key_sets_each_row_to_its_own_values_either_way():
    def run(portable: bool):
        def inner():
            for key in ("chain-a", "chain-b", "chain-c"):
                AuditChain.objects.create(key=key, length=0, last_hash="")
            sql.update_by_key(
                AuditChain,
                "key",
                ("length", "last_hash"),
                [("chain-a", 3, "h3"), ("chain-c", 7, "h7")],
                portable=portable,
            )
            return sorted(AuditChain.objects.filter(key__startswith="chain-").values_list("key", "length", "last_hash"))

        return _rolled_back(inner)

    results = [run(portable) for portable in both_paths()]
    assert results[0] == [("chain-a", 3, "h3"), ("chain-b", 0, ""), ("chain-c", 7, "h7")]
    assert all(result == results[0] for result in results)


def test_insert_unless_present_reports_the_duplicate_instead_of_raising():
    expires = timezone.now() + timedelta(minutes=5)
    with transaction.atomic():  # usable inside a caller's transaction: no exception, no savepoint
        assert sql.insert_unless_present(UsedAssertion, {"key": "k" * 64, "expires_at": expires}, key="key")
        assert not sql.insert_unless_present(UsedAssertion, {"key": "k" * 64, "expires_at": expires}, key="key")
    assert UsedAssertion.objects.filter(key="k" * 64).count() == 1


def test_key_shared_reads_the_same_rows_either_way(owner):
    agent = make_agent(owner)
    for n in range(3):
        make_instance(agent, label=f"w-{n}")
    queryset = Instance.objects.filter(agent=agent).order_by("label")
    results = [
        _rolled_back(lambda portable=portable: [i.label for i in sql.key_shared(queryset, portable=portable)])
        for portable in both_paths()
    ]
    assert results[0] == ["w-0", "w-1", "w-2"]
    assert all(result == results[0] for result in results)


def test_the_credential_claim_takes_the_same_rows_either_way(owner, admin):
    envelope = approved_envelope(make_instance(make_agent(owner)), admin)
    overdue = {credential(envelope, expires_in=-n).jti for n in range(1, 6)}
    credential(envelope, expires_in=600)  # live: never claimed
    credential(envelope, expires_in=-1, status=Credential.Status.REVOKED)  # not active: never claimed
    skipped = sorted(overdue)[0]

    def claim(portable: bool):
        def run():
            statement, params = sweeps.claim_credentials_sql(
                now=timezone.now(), limit=3, skip={skipped}, portable=portable
            )
            with connection.cursor() as cursor:
                cursor.execute(statement, params)
                claimed = {jti for jti, _ in cursor.fetchall()}
            expired = set(Credential.objects.filter(status=Credential.Status.EXPIRED).values_list("jti", flat=True))
            return claimed, expired

        return _rolled_back(run)

    results = [claim(portable) for portable in both_paths()]
    claimed, expired = results[0]
    assert claimed == expired and len(claimed) == 3
    assert claimed <= overdue - {skipped}
    assert all(result == results[0] for result in results)


def test_a_transaction_lock_is_held_by_the_transaction_that_took_it():
    with transaction.atomic():
        sql.transaction_lock("mint:test")
        sql.transaction_lock("mint:test")  # re-entrant within one transaction
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
                assert cursor.fetchone()[0] == 1


def test_a_read_that_takes_a_turn_reads_the_same_row_and_holds_the_same_lock(owner):
    """PreparedValues(turn=…) returns what the plain read returns and, on PostgreSQL, holds the very
    lock transaction_lock(turn + id) takes: another session cannot take it until the reader commits."""
    instance = make_instance(make_agent(owner))
    fields = lambda pk: Instance.objects.filter(pk=pk).order_by().values_list("id", "status")  # noqa: E731
    plain = sql.PreparedValues(fields, sample=instance.pk)
    turned = sql.PreparedValues(fields, sample=instance.pk, key_share=True, turn="probe:")
    with transaction.atomic():
        assert turned.fetch(instance.pk) == plain.fetch(instance.pk) == {"id": instance.pk, "status": instance.status}
        if connection.vendor == "postgresql":
            other = _other_session()
            try:
                taken = other.execute(
                    "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [f"probe:{instance.pk}"]
                ).fetchone()[0]
            finally:
                other.close()
            assert taken is False
    assert turned.fetch(uuid.uuid4()) is None  # no row, no lock, no error


def test_a_read_with_a_head_column_answers_it_with_the_row_from_its_own_parameters(owner):
    """PreparedValues(head=…) reads one more expression in the same statement, with parameters given
    per call, and returns the queryset's columns exactly as the plain read does."""
    instance = make_instance(make_agent(owner))
    fields = lambda pk: Instance.objects.filter(pk=pk).order_by().values_list("id", "status")  # noqa: E731
    plain = sql.PreparedValues(fields, sample=instance.pk)
    headed = sql.PreparedValues(fields, sample=instance.pk, head=("bigger", lambda: "%s > %s"))

    assert headed.fetch(instance.pk, head_params=[2, 1]) == {**plain.fetch(instance.pk), "bigger": True}
    assert bool(headed.fetch(instance.pk, head_params=[1, 2])["bigger"]) is False
    assert headed.fetch(uuid.uuid4(), head_params=[2, 1]) is None
    with pytest.raises(ValueError, match="not both"):
        sql.PreparedValues(fields, sample=instance.pk, turn="probe:", head=("x", lambda: "1"))


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL prepares statements; SQLite plans each")
def test_a_prepared_read_is_planned_once_per_connection_and_then_reused(owner):
    """The credential endpoints' reads join three and four tables: planning them cost PostgreSQL
    four to six times what running them did. A PreparedValues read is prepared on the server once
    per connection, and after PostgreSQL's five trial plans it runs on the one generic plan."""
    instance = make_instance(make_agent(owner))
    read = sql.PreparedValues(
        lambda pk: Instance.objects.filter(pk=pk).order_by().values_list("id", "agent__slug", "status"),
        sample=instance.pk,
    )
    for _ in range(8):
        assert read.fetch(instance.pk) == {"id": instance.pk, "agent__slug": instance.agent.slug, "status": "active"}
    assert read.fetch(uuid.uuid4()) is None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), sum(generic_plans) FROM pg_prepared_statements WHERE statement LIKE %s",
            ['%"identities_agent"."slug" AS "agent__slug"%'],
        )
        prepared, generic = cursor.fetchone()
    assert prepared == 1
    assert generic >= 1


@pytest.mark.django_db(transaction=True)  # committed rows: another session must see them to wait on them
def test_locked_rows_reads_the_same_rows_in_key_order_and_locks_them_either_way(owner):
    agent = make_agent(owner)
    instances = [make_instance(agent) for _ in range(3)]
    wanted = [instances[2].pk, instances[0].pk, uuid.uuid4()]  # any order, one that does not exist
    for portable in both_paths():
        with transaction.atomic():
            rows = sql.locked_rows(Instance, wanted, ("status", "created_at"), portable=portable)
            assert [row["pk"] for row in rows] == sorted(wanted[:2])
            for row in rows:
                stored = Instance.objects.get(pk=row["pk"])
                assert row == {"pk": stored.pk, "status": stored.status, "created_at": stored.created_at}
            if connection.vendor == "postgresql":
                other = _other_session()
                try:
                    with pytest.raises(psycopg.errors.LockNotAvailable):
                        other.execute(
                            "SELECT 1 FROM identities_instance WHERE id = %s FOR UPDATE NOWAIT", [instances[0].pk]
                        )
                finally:
                    other.close()
    assert sql.locked_rows(Instance, [], ("status",)) == []


def test_insert_returning_ids_stores_the_same_rows_and_sets_every_id_either_way(owner):
    instance = make_instance(make_agent(owner))
    now = timezone.now()
    columns = ("kind", "agent_id", "instance_id", "jti", "scope", "allow", "reason", "details", "occurred_at")

    def events():
        return [
            ActivityEvent(
                kind=ActivityEvent.Kind.DECISION,
                agent_id=instance.agent_id if n % 2 else None,
                instance_id=instance.id if n % 2 else None,
                jti=f"jti-{n}",
                scope="github:read",
                allow=bool(n % 2),
                reason="ok" if n % 2 else "token_invalid",
                details={"context": {"n": n, "nested": [n, {"k": "v"}]}} if n else {},
                occurred_at=now,
                recorded_at=now,
            )
            for n in range(5)
        ]

    def run(portable: bool):
        def inner():
            made = events()
            every = [f.attname for f in ActivityEvent._meta.concrete_fields if not f.primary_key]
            sql.insert_returning_ids(made, every, portable=portable)
            stored = {e.id: e for e in ActivityEvent.objects.filter(id__in=[m.id for m in made])}
            assert len(stored) == 5 and all(not m._state.adding for m in made)
            return [tuple(getattr(stored[m.id], c) for c in columns) for m in made]

        return _rolled_back(inner)

    results = [run(portable) for portable in both_paths()]
    assert [row[3] for row in results[0]] == [f"jti-{n}" for n in range(5)]  # each id is its own row's
    assert results[0][2][7] == {"context": {"n": 2, "nested": [2, {"k": "v"}]}}
    assert all(result == results[0] for result in results)


def test_insert_rows_returning_ids_stores_what_the_instances_would_either_way(owner):
    """Plain values by attname (what a batch of decisions writes) give the rows that the same
    values as model instances give, and the ids come back in the rows' order. Rows share some
    objects (one ``now``) and not others (each row's own instant, two instances' ids): each keeps
    its own value."""
    agent = make_agent(owner)
    instances = [make_instance(agent), make_instance(agent)]
    now = timezone.now()
    every = [f.attname for f in ActivityEvent._meta.concrete_fields if not f.primary_key]

    def values(n):
        return {
            "kind": ActivityEvent.Kind.DECISION,
            "agent_id": agent.id if n % 2 else None,
            "instance_id": instances[n // 2 % 2].id if n % 2 else None,
            "envelope_id": None,
            "jti": f"jti-{n}",
            "scope": "github:read",
            "resource": f"repo:acme/{n}",
            "allow": bool(n % 2),
            "reason": "ok" if n % 2 else "token_invalid",
            "outcome": "",
            "drift": n == 4,
            "policy_version": "v1",
            "details": {"context": {"n": n, "nested": [n, {"k": "v"}], "text": "é\u2028"}} if n else {},
            "occurred_at": now - timedelta(seconds=n, microseconds=n),
            "recorded_at": now,
            "reported_by": "gateway",
        }

    def stored(ids):
        by_id = {e.id: e for e in ActivityEvent.objects.filter(id__in=ids)}
        assert len(by_id) == 5
        return [tuple(getattr(by_id[found], c) for c in every) for found in ids]

    def run(portable: bool):
        def inner():
            rows = [values(n) for n in range(5)]
            ids = sql.insert_rows_returning_ids(ActivityEvent, rows, every, portable=portable)
            assert ids == sorted(ids) and len(set(ids)) == 5
            return stored(ids)

        return _rolled_back(inner)

    def as_instances():
        made = [ActivityEvent(**values(n)) for n in range(5)]
        sql.insert_returning_ids(made, every)
        return stored([m.id for m in made])

    results = [run(portable) for portable in both_paths()]
    assert [row[every.index("jti")] for row in results[0]] == [f"jti-{n}" for n in range(5)]
    assert [row[every.index("occurred_at")] for row in results[0]] == [
        now - timedelta(seconds=n, microseconds=n) for n in range(5)
    ]
    assert [row[every.index("instance_id")] for row in results[0]] == [
        None,
        instances[0].id,
        None,
        instances[1].id,
        None,
    ]
    assert all(result == results[0] for result in results)
    assert _rolled_back(as_instances) == results[0]
    assert sql.insert_rows_returning_ids(ActivityEvent, [], every) == []
