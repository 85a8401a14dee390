"""On PostgreSQL, every order and search the activity and audit lists offer is served by an index:
EXPLAIN the very query each view runs and read the plan. A Sort node under the LIMIT would mean the
database read every matching row to order them; a Seq Scan, that it read the whole table."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent
from tasks.models import ActivityEvent
from tests.helpers.console import approved
from tests.helpers.factories import make_agent, make_envelope, make_instance

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

ROWS = 3000


@pytest.fixture
def big_tables(owner, admin):
    envelope = approved(make_envelope(make_instance(make_agent(owner, slug="mine"))), admin)
    now = timezone.now()
    ActivityEvent.objects.bulk_create(
        ActivityEvent(
            kind=ActivityEvent.Kind.DECISION,
            agent_id=envelope.agent_id,
            instance_id=envelope.instance_id,
            envelope=envelope,
            scope="github:write",
            resource=f"repo:acme/{i}",
            allow=i % 3 != 0,
            occurred_at=now - timedelta(seconds=(i * 7919) % ROWS),
        )
        for i in range(ROWS)
    )
    AuditEvent.objects.bulk_create(
        AuditEvent(
            chain="explain-test",
            seq=i,
            at=now - timedelta(seconds=(i * 7919) % ROWS),
            actor_type="user",
            actor=f"person-{i % 97}",
            verb=f"kind{i % 97}.touched",
            target_type="thing",
            target_id=f"t-{i:05d}",
            target_label=f"Label {i % 89}",
            prev_hash="0" * 64,
            hash="0" * 64,
        )
        for i in range(ROWS)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE tasks_activityevent")
        cursor.execute("ANALYZE console_auditevent")
        # Small test tables would be read whole whatever the indexes: forbid that, so the plan shows
        # whether an index can serve the query at all (a Seq Scan is then chosen only when none can).
        cursor.execute("SET LOCAL enable_seqscan = off")


def _plan_of_list_query(client, url: str, table: str) -> str:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    listing = [
        q["sql"]
        for q in captured.captured_queries
        if q["sql"].startswith("SELECT") and f'FROM "{table}"' in q["sql"] and "ORDER BY" in q["sql"]
    ]
    assert len(listing) == 1, listing
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {listing[0]}")
        return "\n".join(row[0] for row in cursor.fetchall())


def _assert_both_pages_read_in_order(client, url: str, table: str, index: str) -> None:
    plan = _plan_of_list_query(client, url, table)
    assert index in plan and "Seq Scan" not in plan and "Sort" not in plan, plan
    # The second page too: the cursor's bound starts the same index scan where the first page ended.
    page = client.get(url).content.decode()
    cursor = page.split("before=")[1].split('"')[0].replace("&amp;", "&")
    joiner = "&" if "?" in url else "?"
    plan = _plan_of_list_query(client, f"{url}{joiner}before={cursor}", table)
    assert index in plan and "Seq Scan" not in plan and "Sort" not in plan, plan


@pytest.mark.parametrize(
    ("url", "index"),
    [
        ("/activity/", "activity_when_idx"),
        ("/activity/?sort=when", "activity_when_idx"),
        ("/activity/?sort=-when", "activity_when_idx"),
    ],
)
def test_each_activity_order_reads_its_index_in_order(signed_in, admin, big_tables, url, index):
    _assert_both_pages_read_in_order(signed_in(admin), url, "tasks_activityevent", index)


@pytest.mark.parametrize(
    ("url", "index"),
    [
        ("/audit/", "console_auditevent_pkey"),
        ("/audit/?sort=id", "console_auditevent_pkey"),
        ("/audit/?sort=when", "audit_at_id_idx"),
        ("/audit/?sort=-when", "audit_at_id_idx"),
    ],
)
def test_each_audit_order_reads_its_index_in_order(signed_in, auditor, big_tables, url, index):
    _assert_both_pages_read_in_order(signed_in(auditor), url, "console_auditevent", index)


@pytest.mark.parametrize(
    ("query", "indexes"),
    [
        ("actor=PERSON-96", ["audit_actor_prefix_idx"]),
        ("target=t-0012", ["audit_target_id_prefix_idx", "audit_target_label_prefix_idx"]),
        ("target=label%2088", ["audit_target_id_prefix_idx", "audit_target_label_prefix_idx"]),
        ("target=thing:t-0012", ["audit_target_id_prefix_idx", "audit_target_label_prefix_idx"]),
        ("verb=kind9", ["audit_verb_prefix_idx"]),  # "kind9.%"
        ("verb=kind9.touched", ["audit_verb_prefix_idx"]),
    ],
)
@pytest.mark.parametrize("sort", ["", "&sort=when", "&sort=-when", "&sort=id"])
def test_the_audit_searches_read_their_prefix_indexes(signed_in, auditor, big_tables, query, indexes, sort):
    """A selective prefix (fewer matches than a page) is looked up in its prefix index. (A prefix
    matching a large share of the trail is rightly read along the order's index instead, stopping
    after a page of matches: bounded either way, never the whole table.)"""
    plan = _plan_of_list_query(signed_in(auditor), f"/audit/?{query}{sort}", "console_auditevent")
    assert all(index in plan for index in indexes) and "Seq Scan" not in plan, plan
    assert "LIKE '%" not in plan.replace("\\", "")  # never a leading wildcard


def test_the_searches_find_what_they_say(signed_in, auditor, big_tables):
    """The same queries give the right rows on PostgreSQL, where LIKE is case-sensitive."""
    client = signed_in(auditor)
    page = client.get("/audit/?actor=PERSON-96").content.decode()
    assert "person-96" in page and "person-95" not in page
    assert ">10 events<" in client.get("/audit/?target=t-0001").content.decode()  # t-00010 … t-00019
    assert "No audit events match" in client.get("/audit/?target=T-0001").content.decode()  # ids: exact case
    assert "Label 88" in client.get("/audit/?target=label%2088").content.decode()  # labels: any case
    page = client.get("/audit/?verb=kind9").content.decode()
    assert "kind9.touched" in page and "kind90.touched" not in page and ">31 events<" in page
