import re
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from tasks.models import ActivityEvent
from tests.helpers.console import approved, make_activity
from tests.helpers.factories import make_agent, make_envelope, make_instance

pytestmark = pytest.mark.django_db


@pytest.fixture
def envelopes(owner, other_owner, admin):
    mine = approved(make_envelope(make_instance(make_agent(owner, slug="mine"))), admin)
    theirs = approved(make_envelope(make_instance(make_agent(other_owner, slug="theirs"))), admin)
    return mine, theirs


def test_an_owner_sees_only_their_agents_activity(signed_in, owner, envelopes):
    mine, theirs = envelopes
    make_activity(mine, 1, resource="repo:mine/x")
    make_activity(theirs, 1, resource="repo:theirs/x")
    page = signed_in(owner).get("/activity/").content.decode()
    assert "repo:mine/x" in page and "repo:theirs/x" not in page
    assert "repo:theirs/x" not in signed_in(owner).get("/activity/?agent=theirs").content.decode()


def test_activity_filters_by_kind_decision_drift_and_envelope(signed_in, auditor, envelopes):
    mine, theirs = envelopes
    make_activity(mine, 1, resource="r:allowed", allow=True)
    make_activity(mine, 1, resource="r:denied", allow=False)
    make_activity(mine, 1, resource="r:drift", allow=False, drift=True)
    make_activity(theirs, 1, resource="r:secret", kind=ActivityEvent.Kind.SECRET_ACCESS, allow=None)
    client = signed_in(auditor)
    page = client.get("/activity/?outcome=denied").content.decode()
    assert "r:denied" in page and "r:allowed" not in page
    page = client.get("/activity/?drift=1").content.decode()
    assert "r:drift" in page and "r:denied" not in page
    page = client.get("/activity/?kind=secret_access").content.decode()
    assert "r:secret" in page and "r:drift" not in page
    page = client.get(f"/activity/?envelope={theirs.id}").content.decode()
    assert "r:secret" in page and "r:drift" not in page
    assert client.get("/activity/?envelope=not-a-uuid&since=garbage&kind=%00").status_code == 200
    assert client.get("/activity/?since=24h").status_code == 200


def _next_link(page: str) -> str:
    match = re.search(r'href="\?(before=[0-9.]+)"[^>]*>Older', page)
    assert match, "no link to older rows"
    return "/activity/?" + match.group(1)


def test_activity_pages_by_keyset_counting_only_up_to_the_cap(
    signed_in, admin, envelopes, django_assert_max_num_queries
):
    mine, _ = envelopes
    make_activity(mine, 120)
    ids = list(ActivityEvent.objects.order_by("-occurred_at", "-id").values_list("id", flat=True))
    client = signed_in(admin)
    with django_assert_max_num_queries(6) as captured:
        first = client.get("/activity/").content.decode()
    # The one count on the table is bounded: COUNT over a LIMIT subquery, never a COUNT(*) of it all.
    counts = [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"].upper() and "activity" in q["sql"]]
    assert len(counts) == 1 and "LIMIT" in counts[0]
    second = client.get(_next_link(first)).content.decode()
    assert "Newest" in second
    third = client.get(_next_link(second)).content.decode()
    assert "Older" not in third
    shown = [int(i) for page in (first, second, third) for i in re.findall(r'data-event="(\d+)"', page)]
    assert shown == ids


def test_activity_reads_newest_first_by_when_it_happened_not_by_arrival(signed_in, admin, envelopes):
    """A gateway reporting late inserts old events after new ones: the list still reads in time order,
    ties broken by id, and the keyset cursor carries across a tie at the page boundary."""
    mine, _ = envelopes
    now = timezone.now()
    fresh = make_activity(mine, 1, resource="r:five-min-ago", occurred_at=now - timedelta(minutes=5))
    tied = make_activity(mine, 60, resource="r:tied", occurred_at=now - timedelta(hours=1))
    late = make_activity(mine, 1, resource="r:two-days-ago", occurred_at=now - timedelta(days=2))
    client = signed_in(admin)
    first = client.get("/activity/").content.decode()
    second = client.get(_next_link(first)).content.decode()
    order = [int(i) for page in (first, second) for i in re.findall(r'data-event="(\d+)"', page)]
    tied_ids = sorted((t.pk for t in tied), reverse=True)
    assert order == [fresh[0].pk, *tied_ids, late[0].pk]
    assert first.index("r:five-min-ago") < first.index("r:tied")
    assert client.get("/activity/?before=garbage").status_code == 200


def test_times_are_machine_readable_utc_with_year_and_zone(signed_in, admin, envelopes):
    mine, _ = envelopes
    make_activity(mine, 1, occurred_at=datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC))
    page = signed_in(admin).get("/activity/").content.decode()
    assert '<time datetime="2025-03-04T05:06:07Z"' in page
    assert "4 Mar 2025, 05:06 UTC" in page  # the year and the zone, never only in a tooltip
    assert "ago" in page and "in " not in re.sub(r"<[^>]+>", "", page).split("4 Mar 2025")[1][:20]


def test_activity_answers_htmx_with_only_its_rows_and_links_to_the_export(signed_in, admin, envelopes):
    make_activity(envelopes[0], 1)
    client = signed_in(admin)
    assert "<html" not in client.get("/activity/", HTTP_HX_REQUEST="true").content.decode()
    assert "/api/v1/events/?kind=decision" in client.get("/activity/?kind=decision").content.decode()


def test_the_agent_filter_matches_part_of_a_slug_and_says_it_is_active(signed_in, admin, envelopes):
    mine, theirs = envelopes
    make_activity(mine, 1, resource="r:mine")
    make_activity(theirs, 1, resource="r:theirs")
    client = signed_in(admin)
    page = client.get("/activity/?agent=ine").content.decode()
    assert "r:mine" in page and "r:theirs" not in page
    assert "agent contains “ine”" in page and "Clear filters" in page
    assert "No activity matches these filters." in client.get("/activity/?agent=zzz").content.decode()
