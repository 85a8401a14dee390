import re

import pytest

from tests.helpers.console import approved, make_activity, make_credential
from tests.helpers.factories import make_agent, make_envelope, make_instance

pytestmark = pytest.mark.django_db


def _text(page: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


def _world(owner, other_owner, admin, second_admin, n=3):
    mine = make_instance(make_agent(owner))
    theirs = make_instance(make_agent(other_owner, slug="their-agent"))
    for i in range(n):
        make_envelope(mine, intent=f"mine pending {i}")
        make_envelope(theirs, intent=f"theirs pending {i}")
    live = approved(make_envelope(theirs, intent="theirs live", duration_seconds=1200), admin)
    make_credential(live)
    make_activity(live, 2, drift=True, allow=False, reason="scope_not_granted")
    return mine, theirs


def test_an_admin_sees_what_needs_a_person_across_every_agent(signed_in, owner, other_owner, admin, second_admin):
    _world(owner, other_owner, admin, second_admin)
    page = signed_in(admin).get("/").content.decode()
    assert "6 pending · 6 awaiting you" in _text(page)
    assert "mine pending 0" in page and "theirs pending 0" in page
    assert "theirs live" in page  # ends within the hour
    assert "scope_not_granted" in page  # drift in the last 24 h


def test_an_owner_sees_only_their_own_agents_on_the_dashboard(signed_in, owner, other_owner, admin, second_admin):
    _world(owner, other_owner, admin, second_admin)
    page = signed_in(owner).get("/").content.decode()
    assert "mine pending 0" in page
    assert "theirs" not in page and "their-agent" not in page


def test_the_dashboard_query_count_does_not_grow_with_the_data(
    signed_in, owner, other_owner, admin, second_admin, django_assert_max_num_queries
):
    _world(owner, other_owner, admin, second_admin, n=12)
    client = signed_in(admin)
    with django_assert_max_num_queries(16):
        assert client.get("/").status_code == 200


def test_drift_reported_late_does_not_hide_recent_drift(client, admin, owner):
    """Backfilled history arrives with newer ids but old times; the last 24 h must still show."""
    from datetime import timedelta

    from django.utils import timezone

    from tasks.models import ActivityEvent
    from tests.helpers.factories import make_agent, make_instance

    instance = make_instance(make_agent(owner))
    recent = ActivityEvent.objects.create(
        kind="decision",
        agent=instance.agent,
        instance=instance,
        drift=True,
        allow=False,
        reason="scope_not_granted",
        scope="x:recent",
        occurred_at=timezone.now() - timedelta(hours=1),
    )
    ActivityEvent.objects.bulk_create(
        [
            ActivityEvent(
                kind="tool_call",
                agent=instance.agent,
                instance=instance,
                drift=True,
                scope="x:old",
                occurred_at=timezone.now() - timedelta(days=3),
            )
            for _ in range(20)
        ]
    )
    assert recent.id < ActivityEvent.objects.order_by("-id").first().id
    client.force_login(admin)
    page = client.get("/").content.decode()
    assert "x:recent" in page and "x:old" not in page


def test_the_pending_figure_and_the_nav_badge_agree_and_say_why_they_differ(
    signed_in, owner, other_owner, admin, second_admin, django_assert_max_num_queries
):
    _, theirs = _world(owner, other_owner, admin, second_admin, n=2)
    make_envelope(theirs, actor=admin, intent="asked by the admin herself")
    page = signed_in(admin).get("/").content.decode()
    text = _text(page)
    assert "5 pending · 4 awaiting you" in text
    assert "1 you requested, which another admin must approve." in text
    badge = re.search(r'id="inbox-count"[^>]*>(\d+)<', page)
    assert badge and badge.group(1) == "4"
    # Nothing to explain when the two agree.
    other = signed_in(second_admin).get("/").content.decode()
    assert "5 pending · 5 awaiting you" in _text(other)
    assert "you requested" not in other
    queue = _text(signed_in(admin).get("/approvals/").content.decode())
    assert "5 pending · 4 awaiting you" in queue and "1 you requested" in queue
