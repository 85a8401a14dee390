import pytest
from django.core.cache import cache

from audit.models import AuditEvent
from tests.helpers.factories import as_database_owner, make_agent, make_envelope, make_instance

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


def test_an_owner_reads_only_the_audit_of_their_own_agents(signed_in, owner, other_owner):
    make_agent(owner, slug="mine")
    make_agent(other_owner, slug="theirs")
    page = signed_in(owner).get("/audit/").content.decode()
    assert "agent.created" in page and "mine" in page and "theirs" not in page


def test_the_audit_filters_by_actor_verb_target_and_time(signed_in, auditor, owner, other_owner):
    agent = make_agent(owner, slug="mine")
    make_envelope(make_instance(agent), intent="visible intent")
    make_agent(other_owner, slug="theirs")
    client = signed_in(auditor)
    page = client.get("/audit/?actor=oscar").content.decode()
    assert "theirs" in page and "visible intent" not in page
    page = client.get("/audit/?verb=envelope").content.decode()
    assert "visible intent" in page and "agent.created" not in page
    page = client.get(f"/audit/?target=agent:{agent.id}").content.decode()
    assert "agent.created" in page and "instance.registered" not in page
    assert client.get("/audit/?since=1h&target=::").status_code == 200


def test_the_audit_pages_by_keyset_and_links_to_the_export(signed_in, auditor, owner, django_assert_max_num_queries):
    for i in range(60):
        make_agent(owner, slug=f"bot-{i}")
    client = signed_in(auditor)
    with django_assert_max_num_queries(7):  # + the checkpoint sink's state
        page = client.get("/audit/").content.decode()
    oldest_shown = list(AuditEvent.objects.order_by("-id").values_list("id", flat=True))[49]
    assert f"before={oldest_shown}" in page
    assert "/api/v1/audit/export?format=jsonl" in page and "/api/v1/audit/export?format=csv" in page


def test_the_chain_status_says_intact(signed_in, auditor, owner):
    make_agent(owner)
    html = signed_in(auditor).get("/audit/chain-status").content.decode()
    assert "chain intact" in html and "rows verified" in html


def test_the_chain_status_names_the_first_bad_row(signed_in, auditor, owner):
    make_agent(owner, slug="one")
    make_agent(owner, slug="two")
    victim = AuditEvent.objects.order_by("id").first()
    with as_database_owner():
        AuditEvent.objects.filter(pk=victim.pk).update(reason="rewritten history")
    html = signed_in(auditor).get("/audit/chain-status?recheck=1").content.decode()
    assert "chain broken" in html and f"id {victim.id}" in html and "does not match its hash" in html


def test_the_audit_page_says_which_filters_are_on(signed_in, admin):
    page = signed_in(admin).get("/audit/?verb=envelope").content.decode()
    assert "Filtered:" in page and "verb starts with “envelope”" in page and "Clear filters" in page
    assert "Filtered:" not in signed_in(admin).get("/audit/").content.decode()
