"""Sorts, searches and capped counts on the two big lists (activity, audit): only orders an index
serves, carried by the keyset cursor, never OFFSET, never a full COUNT."""

import re
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from audit import services as audit
from audit.models import AuditEvent
from console.views import _common
from tasks.models import ActivityEvent
from tests.helpers.console import approved, make_activity
from tests.helpers.factories import make_agent, make_envelope, make_instance

pytestmark = pytest.mark.django_db


@pytest.fixture
def mine(owner, admin):
    return approved(make_envelope(make_instance(make_agent(owner, slug="mine"))), admin)


def _events(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'data-event="(\d+)"', page)]


def _next(page: str, path: str) -> str | None:
    match = re.search(r'<a href="\?([^"]*before=[^"]*)">(?:Next|Older) →', page)
    return f"{path}?{match.group(1).replace('&amp;', '&')}" if match else None


def _walk(client, url: str, path: str) -> list[int]:
    """Every row the pages show, following the pager's link to the end."""
    shown: list[int] = []
    while url:
        page = client.get(url).content.decode()
        shown += _events(page)
        url = _next(page, path)
    return shown


def _spread_activity(mine, n: int) -> list[ActivityEvent]:
    """``n`` events at shuffled times, with ties, reported in an order unlike the time order."""
    now = timezone.now()
    rows = []
    for i in range(n):
        rows += make_activity(mine, 1, occurred_at=now - timedelta(minutes=(i * 7) % 23))
    return rows


# --- activity ------------------------------------------------------------------------------------


def test_activity_sorts_oldest_first_and_pages_every_row_once(signed_in, admin, mine):
    _spread_activity(mine, 75)
    oldest_first = list(ActivityEvent.objects.order_by("occurred_at", "id").values_list("id", flat=True))
    client = signed_in(admin)
    page = client.get("/activity/?sort=when").content.decode()
    assert 'aria-sort="ascending"' in page and "oldest first" in page
    assert _events(page) == oldest_first[:50]
    assert _walk(client, "/activity/?sort=when", "/activity/") == oldest_first  # each once, in order


def test_activity_sorts_newest_first_by_default_and_on_the_second_click(signed_in, admin, mine):
    _spread_activity(mine, 60)
    newest_first = list(ActivityEvent.objects.order_by("-occurred_at", "-id").values_list("id", flat=True))
    client = signed_in(admin)
    default = client.get("/activity/").content.decode()
    assert 'aria-sort="descending"' in default and 'href="?sort=when"' in default  # the header's link
    ascending = client.get("/activity/?sort=when").content.decode()
    assert 'href="?sort=-when"' in ascending
    assert _walk(client, "/activity/?sort=-when", "/activity/") == newest_first


def test_an_unknown_sort_or_a_cursor_from_another_sort_starts_cleanly(signed_in, admin, mine):
    _spread_activity(mine, 60)
    newest_first = list(ActivityEvent.objects.order_by("-occurred_at", "-id").values_list("id", flat=True))
    oldest_first = list(reversed(newest_first))
    client = signed_in(admin)
    for bad in ("resource", "-kind", "%00", "when;drop", "-"):
        response = client.get(f"/activity/?sort={bad}")
        assert response.status_code == 200 and _events(response.content.decode()) == newest_first[:50]
    first = client.get("/activity/").content.decode()
    newest_cursor = re.search(r"before=([0-9.]+)", first).group(1)
    # A cursor made newest-first, used oldest-first (a hand-edited link): the first page, not a skip.
    page = client.get(f"/activity/?sort=when&before={newest_cursor}").content.decode()
    assert _events(page) == oldest_first[:50]
    ascending = client.get("/activity/?sort=when").content.decode()
    ascending_cursor = re.search(r"before=(when~[0-9.]+)", ascending).group(1)
    page = client.get(f"/activity/?before={ascending_cursor}").content.decode()
    assert _events(page) == newest_first[:50]
    for garbage in ("when~", "when~1.x", "when~99999999999999999999.1", "~5", "-when~1.2.3"):
        assert client.get(f"/activity/?sort=when&before={garbage}").status_code == 200


def test_the_sort_survives_filters_and_the_clear_link_keeps_it(signed_in, admin, mine):
    make_activity(mine, 3, allow=False)
    client = signed_in(admin)
    page = client.get("/activity/?outcome=denied&sort=when").content.decode()
    assert 'name="sort" value="when"' in page  # the filter form keeps the order
    assert 'href="/activity/?sort=when">Clear filters' in page
    assert 'href="/activity/">Clear filters' in client.get("/activity/?outcome=denied").content.decode()


def test_activity_pages_count_with_one_bounded_query(signed_in, admin, mine, django_assert_num_queries):
    make_activity(mine, 120)
    client = signed_in(admin)
    # session, user, roles, the page, the capped count, the nav's pending badge. The count is the
    # one query added by the count (6 where there were 5): a COUNT over a LIMIT subquery.
    with django_assert_num_queries(6) as captured:
        page = client.get("/activity/?sort=when").content.decode()
    counts = [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"] and "activity" in q["sql"]]
    assert len(counts) == 1 and f"LIMIT {_common.COUNT_CAP}" in counts[0]
    assert "120 events" in page


def test_activity_counts_exactly_below_the_cap_and_says_plus_at_it(signed_in, admin, mine, monkeypatch):
    monkeypatch.setattr(_common, "COUNT_CAP", 5)
    monkeypatch.setattr(_common, "PAGE_SIZE", 2)
    make_activity(mine, 4, allow=True)
    make_activity(mine, 1, allow=False)
    client = signed_in(admin)
    assert "4 events" in client.get("/activity/?outcome=allowed").content.decode()  # below: exact
    assert "5+ events" in client.get("/activity/").content.decode()  # at the cap: "at least"
    make_activity(mine, 3)
    assert "5+ events" in client.get("/activity/").content.decode()  # above it
    assert "1 event<" in client.get("/activity/?outcome=denied").content.decode()  # one page: no query


# --- audit ---------------------------------------------------------------------------------------


def _audit_at(actor, n: int, *, label: str = "thing", target_id: str = "t-1") -> None:
    now = timezone.now()
    with transaction.atomic():
        for i in range(n):
            audit.record(
                "thing.touched",
                actor=actor,
                target=("thing", target_id, label),
                at=now - timedelta(minutes=(i * 7) % 23),
            )


def test_audit_sorts_by_time_and_number_both_ways_and_pages_every_row_once(signed_in, auditor, admin):
    _audit_at(admin, 70)
    client = signed_in(auditor)
    by_time = list(AuditEvent.objects.order_by("at", "id").values_list("id", flat=True))
    page = client.get("/audit/?sort=when").content.decode()
    assert 'aria-sort="ascending"' in page and _events(page) == by_time[:50]
    assert _walk(client, "/audit/?sort=when", "/audit/") == by_time
    assert _walk(client, "/audit/?sort=-when", "/audit/") == list(
        AuditEvent.objects.order_by("-at", "-id").values_list("id", flat=True)
    )
    assert _walk(client, "/audit/?sort=id", "/audit/") == sorted(by_time)
    default = client.get("/audit/?sort=nonsense").content.decode()
    assert _events(default) == sorted(by_time, reverse=True)[:50]
    assert 'aria-sort="descending"' in default


def test_audit_actor_is_a_case_insensitive_prefix(signed_in, auditor, admin, owner):
    make_agent(owner, slug="mine")  # by olivia
    _audit_at(admin, 1, label="by ada")  # by ada
    client = signed_in(auditor)
    page = client.get("/audit/?actor=OLI").content.decode()
    assert "agent.created" in page and "by ada" not in page
    assert "actor starts with “OLI”" in page
    page = client.get("/audit/?actor=ad").content.decode()
    assert "by ada" in page and "agent.created" not in page
    assert "No audit events match" in client.get("/audit/?actor=livia").content.decode()  # a prefix, not a part


def test_audit_target_by_id_prefix_label_prefix_or_kind(signed_in, auditor, admin, owner):
    agent = make_agent(owner, slug="invoice-triage")
    _audit_at(admin, 1, label="Quarterly Report", target_id="rep-2026-q4")
    client = signed_in(auditor)
    page = client.get(f"/audit/?target={str(agent.id)[:8]}").content.decode()
    assert "agent.created" in page and "Quarterly Report" not in page
    page = client.get(f"/audit/?target=agent:{str(agent.id)[:6]}").content.decode()
    assert "agent.created" in page and "Quarterly Report" not in page
    page = client.get("/audit/?target=quarterly").content.decode()  # label, any case
    assert "Quarterly Report" in page and "agent.created" not in page
    page = client.get("/audit/?target=rep-2026").content.decode()  # id prefix
    assert "Quarterly Report" in page
    assert "No audit events match" in client.get("/audit/?target=Report").content.decode()
    assert "No audit events match" in client.get("/audit/?target=thing:zzz").content.decode()


def test_an_owner_searching_the_audit_never_sees_other_agents(signed_in, owner, other_owner):
    make_agent(owner, slug="mine-one")
    theirs = make_agent(other_owner, slug="mine-too")  # a label with the same prefix, not theirs to see
    client = signed_in(owner)
    page = client.get("/audit/?target=mine").content.decode()
    assert "mine-one" in page and "mine-too" not in page
    assert "mine-too" not in client.get(f"/audit/?target=agent:{theirs.id}").content.decode()
    assert "mine-too" not in client.get("/audit/?actor=osc").content.decode()
    assert "mine-too" not in client.get("/audit/?actor=osc&sort=when").content.decode()


def test_audit_counts_capped_with_filters(signed_in, auditor, admin, monkeypatch):
    monkeypatch.setattr(_common, "COUNT_CAP", 5)
    _audit_at(admin, 5, label="five")
    client = signed_in(auditor)
    assert "5+ events" in client.get("/audit/").content.decode()
    assert "5+ events" in client.get("/audit/?target=five").content.decode()
    _audit_at(admin, 4, label="four", target_id="t-4")
    assert "4 events" in client.get("/audit/?target=four").content.decode()


def test_the_audit_page_queries_stay_pinned(signed_in, auditor, owner, django_assert_num_queries):
    for i in range(60):
        make_agent(owner, slug=f"bot-{i}")
    client = signed_in(auditor)
    # session, user, roles, the page, the capped count (new: one more query, only when the list is
    # longer than a page), the checkpoint sink's state. An auditor has no pending badge to count.
    with django_assert_num_queries(6):
        client.get("/audit/?sort=when")
    # A target search first reads the jti side table (one indexed query), then searches the trail.
    with django_assert_num_queries(7):
        client.get("/audit/?target=bot&sort=-when")
