"""Sortable columns on the bounded lists (approval queue, people, API tokens, sign-in lockouts):
ordered in the database (or over the whole bounded set), stable across loads and pages, a bad
``?sort=`` quietly the default, the order kept by filters and by the banner's clear link."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from accounts import services as account_services
from console.views import approvals
from tests.helpers.factories import make_agent, make_envelope, make_instance

pytestmark = pytest.mark.django_db


def _queue_intents(page: str) -> list[str]:
    return re.findall(r'<td data-label="Intent"><a href="[^"]+">([^<]+)</a>', page)


@pytest.fixture
def queue(owner, other_owner):
    """Five pending envelopes on three agents with durations that sort differently from arrival."""
    alpha = make_instance(make_agent(owner, slug="alpha"))
    beta = make_instance(make_agent(other_owner, slug="beta"))
    gamma = make_instance(make_agent(owner, slug="gamma"))
    plan = [(gamma, 600), (alpha, 3600), (beta, 1200), (alpha, 600), (gamma, 2400)]
    return [make_envelope(inst, intent=f"job-{i}", duration_seconds=d) for i, (inst, d) in enumerate(plan)]


def test_the_queue_sorts_by_agent_and_by_duration_both_ways(signed_in, admin, queue):
    client = signed_in(admin)
    page = client.get("/approvals/?sort=agent").content.decode()
    shown = _queue_intents(page)  # alpha, beta, gamma (the same agent's in envelope-id order)
    assert set(shown[:2]) == {"job-1", "job-3"} and shown[2] == "job-2" and set(shown[3:]) == {"job-0", "job-4"}
    assert 'aria-sort="ascending"' in page and 'href="?sort=-agent"' in page
    page = client.get("/approvals/?sort=-duration").content.decode()
    assert _queue_intents(page)[:2] == ["job-1", "job-4"]  # 1 h, then 40 min
    assert 'aria-sort="descending"' in page
    default = client.get("/approvals/?sort=risk;drop").content.decode()
    assert _queue_intents(default) == [f"job-{i}" for i in range(5)]  # oldest first, quietly


def test_the_queue_pages_under_a_sort_show_every_envelope_once(signed_in, admin, queue, monkeypatch):
    monkeypatch.setattr(approvals, "QUEUE_LIMIT", 2)
    client = signed_in(admin)
    url, seen = "/approvals/?sort=-duration", []
    while url:
        page = client.get(url).content.decode()
        seen += _queue_intents(page)
        match = re.search(r'href="\?([^"]*after=[^"]+)">Next', page)
        url = f"/approvals/?{match.group(1).replace('&amp;', '&')}" if match else None
    assert sorted(seen) == [f"job-{i}" for i in range(5)] and len(seen) == 5
    assert seen[:2] == ["job-1", "job-4"] and "sort=-duration" in page  # the order survived the pages


def test_the_queue_keeps_its_sort_through_filters_and_clear(signed_in, admin, queue):
    page = signed_in(admin).get("/approvals/?agent=alpha&sort=-duration").content.decode()
    assert _queue_intents(page) == ["job-1", "job-3"]
    assert 'name="sort" value="-duration"' in page
    assert 'href="/approvals/?sort=-duration">Clear filters' in page


def test_the_sorted_queue_costs_no_more_queries(signed_in, admin, queue, django_assert_num_queries):
    client = signed_in(admin)
    with django_assert_num_queries(8) as default:
        client.get("/approvals/")
    with django_assert_num_queries(len(default)):
        client.get("/approvals/?sort=-requested")


def test_people_sort_by_last_sign_in_and_name(signed_in, admin, owner, auditor, other_owner):
    now = timezone.now()
    User = get_user_model()
    User.objects.filter(pk=owner.pk).update(last_login=now - timedelta(days=2))
    User.objects.filter(pk=auditor.pk).update(last_login=now - timedelta(hours=1))
    User.objects.filter(pk=other_owner.pk).update(last_login=None)
    client = signed_in(admin)  # signs ada in now
    User.objects.filter(pk=admin.pk).update(last_login=now - timedelta(days=9))

    def names(url):
        return re.findall(r'<tr id="person-\d+"><td><a href="[^"]+">([^<]+)</a>', client.get(url).content.decode())

    assert names("/people/?sort=-last-sign-in") == ["audrey", "olivia", "ada", "oscar"]  # never: last
    assert names("/people/?sort=last-sign-in") == ["ada", "olivia", "audrey", "oscar"]
    assert names("/people/?sort=-person") == sorted(names("/people/"), reverse=True)
    assert names("/people/?sort=password") == sorted(names("/people/"))
    assert 'aria-sort="descending"' in client.get("/people/?sort=-last-sign-in").content.decode()


def test_tokens_sort_by_name_and_show_only_your_own(signed_in, admin, owner):
    for name in ("zeta", "alpha", "mid"):
        account_services.create_api_token(user=admin, actor=admin, name=name, expires_days=30)
    account_services.create_api_token(user=owner, actor=owner, name="not-yours", expires_days=30)
    client = signed_in(admin)

    def names(url):
        page = client.get(url).content.decode()
        return re.findall(r"<tr><td>([^<]+)</td><td class=\"mono\">", page)

    assert names("/tokens/?sort=name") == ["alpha", "mid", "zeta"]
    assert names("/tokens/?sort=-name") == ["zeta", "mid", "alpha"]
    assert names("/tokens/") == ["mid", "alpha", "zeta"]  # newest first
    assert names("/tokens/?sort=prefix") == names("/tokens/")
    assert "not-yours" not in client.get("/tokens/?sort=name").content.decode()


def test_lockouts_sort_by_failures_and_account(settings, signed_in, admin):
    limit = settings.MANDATE_LOGIN_FAILURE_LIMIT
    for username, extra in (("alan", 2), ("bea", 0), ("cyd", 1)):
        attacker = Client()
        for _ in range(limit + extra):
            attacker.post("/login/", {"username": username, "password": "wrong"}, REMOTE_ADDR="203.0.113.9")
    client = signed_in(admin)

    def rows(url):
        page = client.get(url).content.decode()
        return [
            (a, int(n))
            for a, n in re.findall(r"<tr><td>([a-z]+)</td><td class=\"mono\">[^<]*</td><td>(\d+)</td>", page)
        ]

    def accounts(url):
        return [a for a, _ in rows(url)]

    assert accounts("/sign-in-lockouts/?sort=account") == ["alan", "bea", "cyd"]
    assert accounts("/sign-in-lockouts/?sort=-account") == ["cyd", "bea", "alan"]
    by_failures = rows("/sign-in-lockouts/?sort=-failures")
    assert len(by_failures) == 3 and [n for _, n in by_failures] == sorted((n for _, n in by_failures), reverse=True)
    assert accounts("/sign-in-lockouts/?sort=until") == accounts("/sign-in-lockouts/")  # the default
    assert 'aria-sort="ascending"' in client.get("/sign-in-lockouts/?sort=account").content.decode()


def test_the_agents_clear_link_keeps_the_sort(signed_in, admin, owner):
    make_agent(owner, slug="invoice-triage")
    page = signed_in(admin).get("/agents/?q=inv&sort=-registered").content.decode()
    assert 'href="/agents/?sort=-registered">Clear filters' in page
