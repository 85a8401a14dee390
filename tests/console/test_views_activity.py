import pytest

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


def test_activity_pages_by_keyset_without_counting(signed_in, admin, envelopes, django_assert_max_num_queries):
    mine, _ = envelopes
    make_activity(mine, 120)
    ids = list(ActivityEvent.objects.order_by("-id").values_list("id", flat=True))
    client = signed_in(admin)
    with django_assert_max_num_queries(6) as captured:
        first = client.get("/activity/").content.decode()
    assert not any("COUNT(" in q["sql"].upper() for q in captured.captured_queries if "activity" in q["sql"])
    assert f"before={ids[49]}" in first
    second = client.get(f"/activity/?before={ids[49]}").content.decode()
    assert f"before={ids[99]}" in second and "Newest" in second
    third = client.get(f"/activity/?before={ids[99]}").content.decode()
    assert "Older" not in third


def test_activity_answers_htmx_with_only_its_rows_and_links_to_the_export(signed_in, admin, envelopes):
    make_activity(envelopes[0], 1)
    client = signed_in(admin)
    assert "<html" not in client.get("/activity/", HTTP_HX_REQUEST="true").content.decode()
    assert "/api/v1/events/?kind=decision" in client.get("/activity/?kind=decision").content.decode()
