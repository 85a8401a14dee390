import re

import pytest
from django.test import Client

from audit.models import AuditEvent
from tasks.models import TaskEnvelope
from tests.helpers.factories import make_agent, make_envelope, make_instance

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def instance(owner):
    return make_instance(make_agent(owner, ceiling=("github:read", "github:write", "payments:approve")))


def test_the_queue_lists_pending_envelopes_oldest_first_with_what_an_approver_needs(signed_in, admin, instance):
    first = make_envelope(instance, intent="first in line")
    make_envelope(instance, intent="second in line")
    page = signed_in(admin).get("/approvals/").content.decode()
    assert page.index("first in line") < page.index("second in line")
    for needed in (
        "invoice-triage",
        "olivia",
        "github:write",
        "repo:acme/*",
        "30 min",
        "50 actions",
        "0 of 1",
        f'id="env-{first.id}"',
        'hx-trigger="every 15s',
    ):
        assert needed in page


def test_only_identity_admins_see_the_queue(signed_in, owner, auditor):
    assert signed_in(owner).get("/approvals/").status_code == 403
    assert signed_in(auditor).get("/approvals/").status_code == 403


def test_an_htmx_approval_swaps_the_row_and_updates_the_inbox_out_of_band(signed_in, admin, instance):
    envelope = make_envelope(instance)
    other = make_envelope(instance, intent="still waiting")
    response = signed_in(admin).post(f"/approvals/{envelope.id}/approve", {"comment": "looks right"}, **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert f'id="decided-{envelope.id}"' in html and f'id="env-{envelope.id}"' not in html
    assert re.search(r'<span id="inbox-count"[^>]*hx-swap-oob="true"[^>]*>1</span>', html)
    envelope.refresh_from_db()
    assert envelope.state == TaskEnvelope.State.APPROVED
    assert envelope.approvals.get().comment == "looks right"
    assert other.id  # untouched


def test_an_approval_also_works_as_a_plain_form_post(signed_in, admin, instance):
    envelope = make_envelope(instance)
    response = signed_in(admin).post(f"/approvals/{envelope.id}/approve", {"comment": "ok"}, follow=True)
    assert response.redirect_chain[-1][0] == "/approvals/"
    assert "Envelope approved" in response.content.decode()
    envelope.refresh_from_db()
    assert envelope.state == "approved"


def test_a_decision_without_the_csrf_token_is_refused(admin, instance):
    envelope = make_envelope(instance)
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    assert client.post(f"/approvals/{envelope.id}/approve", {"comment": "ok"}).status_code == 403
    envelope.refresh_from_db()
    assert envelope.state == "pending"


def test_the_requester_sees_a_disabled_approve_button_saying_why(signed_in, admin, instance):
    envelope = make_envelope(instance, actor=admin)
    page = signed_in(admin).get("/approvals/").content.decode()
    row = page[page.index(f'id="env-{envelope.id}"') :]
    assert re.search(r'<button type="submit" class="approve" disabled', row)
    assert "nobody approves an envelope they requested" in row


def test_an_owner_who_is_also_an_admin_cannot_approve_a_high_risk_envelope_of_their_own_agent(
    signed_in, admin, second_admin
):
    agent = make_agent(admin, slug="admins-own", ceiling=("payments:approve",))
    envelope = make_envelope(make_instance(agent), actor=admin, scopes=("payments:approve",), duration_seconds=600)
    # Requested by the other admin on the owner's behalf, so the owner rule is what stops it.
    TaskEnvelope.objects.filter(pk=envelope.pk).update(requested_by=second_admin)
    page = signed_in(admin).get("/approvals/").content.decode()
    assert "never approves a high-risk envelope for their own agent" in page
    response = signed_in(admin).post(f"/approvals/{envelope.id}/approve", {"comment": "mine"}, **HTMX)
    assert "never approves a high-risk envelope" in response.content.decode()
    envelope.refresh_from_db()
    assert envelope.state == "pending"


def test_a_high_risk_quorum_needs_two_different_admins(signed_in, admin, second_admin, instance):
    envelope = make_envelope(instance, scopes=("payments:approve",), duration_seconds=600)
    assert envelope.required_approvals == 2
    html = signed_in(admin).post(f"/approvals/{envelope.id}/approve", {"comment": "one"}, **HTMX).content.decode()
    assert f'id="env-{envelope.id}"' in html and "1 of 2" in html
    assert "one admin counts once" in html  # the same admin cannot count twice
    again = signed_in(admin).post(f"/approvals/{envelope.id}/approve", {"comment": "again"}, **HTMX)
    assert "already decided" in again.content.decode()
    done = signed_in(second_admin).post(f"/approvals/{envelope.id}/approve", {"comment": "two"}, **HTMX)
    assert f'id="decided-{envelope.id}"' in done.content.decode()
    envelope.refresh_from_db()
    assert envelope.state == "approved"


def test_a_denial_needs_a_comment_and_says_so_in_the_row(signed_in, admin, instance):
    envelope = make_envelope(instance)
    html = signed_in(admin).post(f"/approvals/{envelope.id}/deny", {"comment": ""}, **HTMX).content.decode()
    assert "say why the envelope is denied" in html and f'id="env-{envelope.id}"' in html
    html = signed_in(admin).post(f"/approvals/{envelope.id}/deny", {"comment": "too broad"}, **HTMX).content.decode()
    assert f'id="decided-{envelope.id}"' in html and "denied" in html
    assert AuditEvent.objects.filter(verb="envelope.denied", reason="too broad").exists()


def test_a_decision_on_an_envelope_no_longer_pending_is_refused_politely(signed_in, admin, second_admin, instance):
    envelope = make_envelope(instance)
    signed_in(second_admin).post(f"/approvals/{envelope.id}/approve", {"comment": "ok"})
    response = signed_in(admin).post(f"/approvals/{envelope.id}/approve", {"comment": "late"}, follow=True)
    assert "only pending envelopes can be approved" in response.content.decode()


def test_the_queue_filters_by_risk_agent_and_owner(signed_in, admin, other_owner, instance):
    make_envelope(instance, intent="medium one")
    make_envelope(instance, intent="high one", scopes=("payments:approve",), duration_seconds=600)
    theirs = make_instance(make_agent(other_owner, slug="their-agent"))
    make_envelope(theirs, intent="their one")
    client = signed_in(admin)
    page = client.get("/approvals/?risk=high").content.decode()
    assert "high one" in page and "medium one" not in page
    page = client.get("/approvals/?agent=their-agent").content.decode()
    assert "their one" in page and "medium one" not in page
    page = client.get("/approvals/?owner=olivia").content.decode()
    assert "their one" not in page and "medium one" in page
    assert client.get("/approvals/?risk=<script>").status_code == 200


def test_the_self_refresh_returns_only_the_rows(signed_in, admin, instance):
    make_envelope(instance, intent="refreshed")
    html = signed_in(admin).get("/approvals/", **HTMX).content.decode()
    assert "refreshed" in html and "<html" not in html and 'hx-swap-oob="true"' in html


def test_the_queue_query_count_is_pinned(signed_in, admin, instance, other_owner, django_assert_max_num_queries):
    theirs = make_instance(make_agent(other_owner, slug="their-agent"))
    for i in range(15):
        make_envelope(instance if i % 2 else theirs, intent=f"n{i}")
    client = signed_in(admin)
    with django_assert_max_num_queries(8):
        response = client.get("/approvals/")
    assert response.content.decode().count('class="risk-') == 15


def test_an_owner_cannot_decide_even_by_posting_directly(signed_in, owner, other_owner, instance):
    envelope = make_envelope(instance)
    assert signed_in(other_owner).post(f"/approvals/{envelope.id}/approve").status_code == 403
    assert signed_in(owner).post(f"/approvals/{envelope.id}/deny", {"comment": "x"}).status_code == 403
    envelope.refresh_from_db()
    assert envelope.state == "pending"


def test_queue_filters_match_parts_of_names_and_say_they_are_active(signed_in, admin, other_owner, instance):
    theirs = make_instance(make_agent(other_owner, slug="ledger-invoicer"))
    make_envelope(theirs, intent="triage invoices")
    make_envelope(instance, intent="something else")
    client = signed_in(admin)
    page = client.get("/approvals/?agent=invoicer").content.decode()
    assert "triage invoices" in page and "something else" not in page
    assert "Filtered:" in page and "agent contains “invoicer”" in page and "Clear filters" in page
    empty = client.get("/approvals/?agent=nothing-like-it").content.decode()
    assert "Nothing matches these filters." in empty and "Nothing waiting for a decision." not in empty
    assert "Filtered:" not in client.get("/approvals/").content.decode()


def test_every_decision_button_names_its_envelope(signed_in, admin, instance):
    make_envelope(instance, intent="Label this week's invoices")
    make_envelope(instance, intent="Close stale tickets")
    page = signed_in(admin).get("/approvals/").content.decode()
    labels = re.findall(r'<button[^>]*aria-label="([^"]+)"', page)
    assert "Approve envelope \u2018Label this week&#x27;s invoices\u2019" in labels
    assert "Deny envelope \u2018Close stale tickets\u2019" in labels
    assert len(labels) == len(set(labels)) == 4


def test_bulk_approval_decides_each_envelope_by_the_same_rules_and_reports_refusals(
    signed_in, admin, second_admin, instance
):
    first = make_envelope(instance, intent="first of three")
    second = make_envelope(instance, intent="second of three")
    own = make_envelope(instance, actor=admin, intent="requested by the approver")
    client = signed_in(admin)
    response = client.post(
        "/approvals/bulk",
        {"verb": "approve", "comment": "batch ok", "envelope": [str(first.id), str(second.id), str(own.id)]},
        follow=True,
    )
    page = response.content.decode()
    assert "Approved 2 of 3" in page
    assert "Not approved: “requested by the approver” — nobody approves an envelope they requested." in page
    states = dict(TaskEnvelope.objects.values_list("intent", "state"))
    assert states["first of three"] == states["second of three"] == TaskEnvelope.State.APPROVED
    assert states["requested by the approver"] == TaskEnvelope.State.PENDING
    approved_rows = AuditEvent.objects.filter(verb="envelope.approved", target_id__in=[str(first.id), str(second.id)])
    assert approved_rows.count() == 2  # one audit row per envelope, not one for the batch


def test_bulk_deny_needs_a_comment_and_only_admins_and_csrf_may_post(signed_in, admin, owner, instance):
    envelope = make_envelope(instance, intent="deny me")
    page = signed_in(admin).post("/approvals/bulk", {"verb": "deny", "envelope": [str(envelope.id)]}, follow=True)
    assert "Not denied: “deny me”" in page.content.decode()
    assert TaskEnvelope.objects.get(pk=envelope.pk).state == TaskEnvelope.State.PENDING
    assert signed_in(owner).post("/approvals/bulk", {"verb": "deny", "envelope": [str(envelope.id)]}).status_code == 403
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin)
    assert strict.post("/approvals/bulk", {"verb": "approve", "envelope": [str(envelope.id)]}).status_code == 403
