import pytest
from django.test import Client

from identities import services as identity_services
from identities.models import Agent, Credential
from tasks import lifecycle
from tests.helpers.console import approved, make_activity, make_credential
from tests.helpers.factories import make_agent, make_envelope, make_instance

pytestmark = pytest.mark.django_db


def test_an_owner_lists_only_their_own_agents(signed_in, owner, other_owner):
    make_agent(owner, slug="mine")
    make_agent(other_owner, slug="theirs")
    page = signed_in(owner).get("/agents/").content.decode()
    assert "mine" in page and "theirs" not in page


def test_admins_and_auditors_list_every_agent(signed_in, owner, other_owner, admin, auditor):
    make_agent(owner, slug="mine")
    make_agent(other_owner, slug="theirs")
    for user in (admin, auditor):
        page = signed_in(user).get("/agents/").content.decode()
        assert "mine" in page and "theirs" in page


def test_the_agent_list_searches_filters_by_status_and_paginates(signed_in, owner, admin):
    for i in range(30):
        make_agent(owner, slug=f"bot-{i:02d}")
    paused = Agent.objects.get(slug="bot-07")
    lifecycle.pause_agent(agent=paused, actor=owner)
    client = signed_in(admin)
    page = client.get("/agents/?q=bot-1").content.decode()
    assert "bot-10" in page and "bot-07" not in page
    page = client.get("/agents/?status=paused").content.decode()
    assert "bot-07" in page and "bot-08" not in page
    first = client.get("/agents/").content.decode()
    assert "Page 1 of 2" in first and "bot-24" in first and "bot-25" not in first
    assert "bot-25" in client.get("/agents/?page=2").content.decode()
    assert client.get("/agents/?page=nonsense&status=<x>").status_code == 200


def test_the_agent_list_answers_htmx_with_only_its_rows(signed_in, owner):
    make_agent(owner, slug="mine")
    html = signed_in(owner).get("/agents/?q=mi", HTTP_HX_REQUEST="true").content.decode()
    assert "mine" in html and "<html" not in html


def test_the_agent_list_query_count_is_pinned(signed_in, owner, admin, django_assert_max_num_queries):
    for i in range(20):
        make_instance(make_agent(owner, slug=f"bot-{i:02d}"))
    client = signed_in(admin)
    with django_assert_max_num_queries(7):  # the seventh: the page's pending changes of ceiling
        assert client.get("/agents/").status_code == 200


def test_another_owners_agent_is_not_found_even_by_guessing_its_url(signed_in, owner, other_owner):
    make_agent(other_owner, slug="theirs")
    client = signed_in(owner)
    assert client.get("/agents/theirs/").status_code == 404
    assert client.post("/agents/theirs/pause", {"reason": "x", "confirm": "pause"}).status_code == 404
    assert Agent.objects.get(slug="theirs").status == "active"


def test_the_agent_page_shows_identity_lineage_envelopes_credentials_and_activity(signed_in, owner, admin):
    agent = make_agent(owner)
    parent = make_instance(agent, label="primary")
    from tests.helpers.factories import new_ed25519_key

    clone = identity_services.clone_instance(
        parent=parent, actor=owner, public_jwk=new_ed25519_key()[1], label="the-clone"
    )
    identity_services.spawn_subagent(parent=clone, actor=owner, public_jwk=new_ed25519_key()[1], label="the-sub")
    envelope = approved(make_envelope(parent, intent="live work"), admin)
    credential = make_credential(envelope)
    make_activity(envelope, 2, scope="github:write", resource="repo:acme/special")
    page = signed_in(owner).get(f"/agents/{agent.slug}/").content.decode()
    assert parent.spiffe_id in page and clone.spiffe_id in page
    assert parent.key_thumbprint[:10] in page
    assert page.index("primary") < page.index("the-clone") < page.index("the-sub")
    assert 'data-depth="2"' in page  # the sub-agent sits two levels down the tree
    assert "live work" in page and credential.jti[:10] in page and "repo:acme/special" in page
    assert 'data-expires="' in page


def test_the_agent_page_query_count_is_pinned(signed_in, owner, admin, django_assert_max_num_queries):
    agent = make_agent(owner)
    for i in range(4):
        instance = make_instance(agent, label=f"w{i}")
        envelope = approved(make_envelope(instance), admin)
        make_credential(envelope)
        make_activity(envelope, 3)
        make_envelope(instance)
    client = signed_in(admin)
    with django_assert_max_num_queries(14):
        assert client.get(f"/agents/{agent.slug}/").status_code == 200


def test_pausing_from_the_agent_page_revokes_its_live_credentials(signed_in, owner, admin):
    agent = make_agent(owner)
    envelope = approved(make_envelope(make_instance(agent)), admin)
    credential = make_credential(envelope)
    response = signed_in(admin).post(
        f"/agents/{agent.slug}/pause", {"reason": "incident 42", "confirm": "pause"}, follow=True
    )
    assert "invoice-triage paused" in response.content.decode()
    agent.refresh_from_db()
    credential.refresh_from_db()
    assert agent.status == "paused"
    assert credential.status == Credential.Status.REVOKED


def test_a_lifecycle_change_needs_the_confirmation_box(signed_in, owner):
    agent = make_agent(owner)
    response = signed_in(owner).post(f"/agents/{agent.slug}/retire", {"reason": "done"}, follow=True)
    assert "tick the box" in response.content.decode()
    agent.refresh_from_db()
    assert agent.status == "active"


def test_resume_and_retire_work_and_a_wrong_state_is_refused(signed_in, owner):
    agent = make_agent(owner)
    client = signed_in(owner)
    client.post(f"/agents/{agent.slug}/pause", {"reason": "a", "confirm": "pause"})
    client.post(f"/agents/{agent.slug}/resume", {"reason": "b", "confirm": "resume"})
    agent.refresh_from_db()
    assert agent.status == "active"
    client.post(f"/agents/{agent.slug}/retire", {"reason": "c", "confirm": "retire"})
    response = client.post(f"/agents/{agent.slug}/resume", {"reason": "d", "confirm": "resume"}, follow=True)
    assert "cannot become active" in response.content.decode()
    agent.refresh_from_db()
    assert agent.status == "retired"


def test_an_auditor_reads_but_cannot_pause(signed_in, owner, auditor):
    agent = make_agent(owner)
    client = signed_in(auditor)
    page = client.get(f"/agents/{agent.slug}/").content.decode()
    assert "Read only" in page and "Pause…" not in page
    assert client.post(f"/agents/{agent.slug}/pause", {"reason": "x", "confirm": "pause"}).status_code == 403


def test_lifecycle_posts_are_csrf_protected(owner):
    agent = make_agent(owner)
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    assert client.post(f"/agents/{agent.slug}/pause", {"reason": "x", "confirm": "pause"}).status_code == 403


def test_my_agents_shows_only_mine_with_what_each_can_do_now(signed_in, owner, other_owner, admin):
    mine = make_instance(make_agent(owner, slug="mine"))
    theirs = make_instance(make_agent(other_owner, slug="theirs"))
    envelope = approved(make_envelope(mine, intent="my live task"), admin)
    credential = make_credential(envelope, seconds=120)
    approved(make_envelope(theirs, intent="their live task"), admin)
    make_activity(envelope, 1, allow=False, reason="scope_not_granted", drift=True)
    page = signed_in(owner).get("/my-agents/").content.decode()
    assert "mine" in page and "my live task" in page and credential.jti[:10] in page
    assert "theirs" not in page and "their live task" not in page
    assert f'data-expires="{credential.expires_at.isoformat()}"' in page
    assert "scope_not_granted" in page  # recent decisions


def test_my_agents_flags_stale_instances(signed_in, owner):
    instance = make_instance(make_agent(owner))
    type(instance).objects.filter(pk=instance.pk).update(stale=True)
    page = signed_in(owner).get("/my-agents/").content.decode()
    assert "badge-stale" in page


def test_my_agents_query_count_is_pinned(signed_in, owner, admin, django_assert_max_num_queries):
    for i in range(5):
        instance = make_instance(make_agent(owner, slug=f"bot-{i}"))
        envelope = approved(make_envelope(instance), admin)
        make_credential(envelope)
        make_activity(envelope, 2)
    client = signed_in(owner)
    with django_assert_max_num_queries(10):
        assert client.get("/my-agents/").status_code == 200


def test_the_agents_list_sorts_by_its_columns_and_says_when_it_is_filtered(signed_in, admin, owner, other_owner):
    import re

    from tests.helpers.factories import make_agent as agent

    agent(owner, slug="alpha-bot")
    agent(other_owner, slug="beta-bot")
    agent(owner, slug="gamma-helper")
    client = signed_in(admin)

    def slugs(url):
        return re.findall(r"<strong>([a-z-]+)</strong>", client.get(url).content.decode())

    assert slugs("/agents/?sort=slug") == ["alpha-bot", "beta-bot", "gamma-helper"]
    assert slugs("/agents/?sort=-slug") == ["gamma-helper", "beta-bot", "alpha-bot"]
    assert slugs("/agents/?sort=owner")[0] == "beta-bot" or slugs("/agents/?sort=-owner")[0] == "beta-bot"
    assert slugs("/agents/?sort=bogus") == ["alpha-bot", "beta-bot", "gamma-helper"]
    page = client.get("/agents/?sort=slug").content.decode()
    assert 'aria-sort="ascending"' in page and "sort=-slug" in page
    filtered = client.get("/agents/?q=bot").content.decode()
    assert "Filtered:" in filtered and "slug or name contains “bot”" in filtered and "2 shown" in filtered
    assert "No agents match these filters." in client.get("/agents/?q=zzz").content.decode()


def test_the_agents_list_query_count_is_pinned(signed_in, admin, owner, django_assert_max_num_queries):
    from tests.helpers.factories import make_agent as agent

    for n in range(12):
        agent(owner, slug=f"pinned-{n}")
    client = signed_in(admin)
    with django_assert_max_num_queries(8):
        assert client.get("/agents/?sort=-registered&q=pinned").status_code == 200
