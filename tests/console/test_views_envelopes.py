import re

import pytest
from django.test import Client

from identities.models import Credential
from tasks.models import TaskEnvelope
from tests.helpers.console import approved, make_activity, make_credential
from tests.helpers.factories import make_agent, make_envelope, make_instance

pytestmark = pytest.mark.django_db


@pytest.fixture
def instance(owner):
    return make_instance(make_agent(owner, max_envelope_seconds=3600))


def _form(instance, **changes):
    data = {
        "instance": str(instance.id),
        "intent": "sort the invoices",
        "scopes": "github:read, github:write",
        "resources": "repo:acme/app\nrepo:acme/ledger",
        "duration_seconds": "1800",
        "max_actions": "40",
        "delegation_depth": "0",
    }
    data.update(changes)
    return data


def test_an_owner_requests_an_envelope_and_lands_on_it(signed_in, owner, instance):
    response = signed_in(owner).post("/envelopes/new/", _form(instance), follow=True)
    envelope = TaskEnvelope.objects.get()
    assert response.redirect_chain[-1][0] == f"/envelopes/{envelope.id}/"
    assert envelope.state == "pending" and envelope.scopes == ["github:read", "github:write"]
    assert envelope.resources == ["repo:acme/app", "repo:acme/ledger"] and envelope.requested_by == owner


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"scopes": "github:read payments:approve"}, "Scopes", "outside agent invoice-triage"),
        ({"duration_seconds": "7200"}, "Duration", "longer than agent invoice-triage allows"),
        ({"duration_seconds": "half an hour"}, "Duration", "a whole number of seconds"),
        ({"max_actions": "0"}, "Action budget", "a whole number from 1"),
        ({"intent": "  "}, "Intent", "say what the task is for"),
        ({"delegation_depth": "2"}, "Delegation depth", "must be 0 unless may delegate"),
        ({"scopes": "NOT A SCOPE"}, "Scopes", "is not a scope"),
    ],
)
def test_the_request_form_validates_like_the_api_and_names_the_field(
    signed_in, owner, instance, changes, field, message
):
    response = signed_in(owner).post("/envelopes/new/", _form(instance, **changes))
    assert response.status_code == 400
    page = response.content.decode()
    assert message in page
    assert 'aria-describedby="e-' in page and 'aria-invalid="true"' in page
    assert f"<strong>{field}</strong>" in page  # the label people see, linked to the field
    assert not re.search(r"<strong>[a-z_]+</strong>", page)  # never the API's field name
    assert not TaskEnvelope.objects.exists()


def test_suspicious_resource_patterns_are_questioned_before_the_request(signed_in, owner, instance):
    client = signed_in(owner)
    response = client.post("/envelopes/new/", _form(instance, resources="repo:acme/***"))
    page = response.content.decode()
    assert response.status_code == 400 and not TaskEnvelope.objects.exists()
    assert "“repo:acme/***” repeats a wildcard; it matches exactly what “repo:acme/**” matches." in page
    assert 'name="confirm_patterns"' in page and "repo:acme/***" in page  # what was typed is kept
    confirmed = client.post("/envelopes/new/", _form(instance, resources="repo:acme/***", confirm_patterns="1"))
    assert confirmed.status_code == 302
    assert TaskEnvelope.objects.get().resources == ["repo:acme/***"]


@pytest.mark.parametrize(
    ("resources", "warning"),
    [
        ("**", "“**” matches every resource."),
        ("*:**", "“*:**” matches every resource."),
        ("repo:**", "“repo:**” matches every resource of type repo."),
        ("repo:*", "“repo:*” matches every resource of type repo."),
        ("repo:acme/**", None),  # '**' is its own wildcard (it crosses '/'), not a slip
        ("repo:acme/*", None),
    ],
)
def test_a_pattern_is_questioned_for_what_it_can_match(signed_in, owner, instance, resources, warning):
    response = signed_in(owner).post("/envelopes/new/", _form(instance, resources=resources))
    if warning is None:
        assert response.status_code == 302 and TaskEnvelope.objects.get().resources == [resources]
    else:
        assert response.status_code == 400 and warning in response.content.decode()
        assert not TaskEnvelope.objects.exists()


def test_the_request_form_keeps_what_was_typed_after_an_error(signed_in, owner, instance):
    page = signed_in(owner).post("/envelopes/new/", _form(instance, duration_seconds="99999")).content.decode()
    assert "sort the invoices" in page and "github:read, github:write" in page


def test_an_htmx_request_redirects_with_a_header(signed_in, owner, instance):
    response = signed_in(owner).post("/envelopes/new/", _form(instance), HTTP_HX_REQUEST="true")
    assert response.status_code == 204
    assert response["HX-Redirect"] == f"/envelopes/{TaskEnvelope.objects.get().id}/"
    bad = signed_in(owner).post("/envelopes/new/", _form(instance, scopes="x:y"), HTTP_HX_REQUEST="true")
    assert bad.status_code == 200 and "<html" not in bad.content.decode() and "outside agent" in bad.content.decode()


def test_nobody_requests_for_an_instance_they_do_not_own(signed_in, other_owner, instance):
    response = signed_in(other_owner).post("/envelopes/new/", _form(instance))
    assert response.status_code == 400 and "choose one of your active instances" in response.content.decode()
    assert str(instance.id) not in signed_in(other_owner).get("/envelopes/new/").content.decode()
    assert not TaskEnvelope.objects.exists()


def test_an_auditor_cannot_request(signed_in, auditor):
    assert signed_in(auditor).get("/envelopes/new/").status_code == 403


def test_the_envelope_page_shows_timeline_credentials_as_a_tree_activity_and_drift(signed_in, owner, admin, instance):
    envelope = approved(make_envelope(instance, may_delegate=True, delegation_depth=1), admin)
    parent = make_credential(envelope)
    child = make_credential(envelope, parent=parent, seconds=100)
    make_activity(envelope, 2, drift=True, allow=False, reason="scope_not_granted", resource="repo:evil/x")
    TaskEnvelope.objects.filter(pk=envelope.pk).update(drift_count=2)
    page = signed_in(owner).get(f"/envelopes/{envelope.id}/").content.decode()
    assert "envelope.requested" in page and "envelope.approved" in page and "ok" in page
    assert page.index(parent.jti[:12]) < page.index(child.jti[:12])
    assert 'data-depth="1"' in page
    assert "repo:evil/x" in page and "2 calls outside the envelope" in page
    assert "Revoke…" in page and "Complete" in page and "Re-task…" in page


def test_another_owners_envelope_is_not_found(signed_in, other_owner, instance):
    envelope = make_envelope(instance)
    client = signed_in(other_owner)
    assert client.get(f"/envelopes/{envelope.id}/").status_code == 404
    for verb in ("revoke", "complete", "retask"):
        assert client.post(f"/envelopes/{envelope.id}/{verb}", {"reason": "x"}).status_code == 404


def test_the_envelope_page_query_count_is_pinned(signed_in, owner, admin, instance, django_assert_max_num_queries):
    envelope = approved(make_envelope(instance), admin)
    for _ in range(5):
        make_credential(envelope)
    make_activity(envelope, 10)
    client = signed_in(owner)
    with django_assert_max_num_queries(12):
        assert client.get(f"/envelopes/{envelope.id}/").status_code == 200


def test_revoking_an_envelope_revokes_its_credentials(signed_in, owner, admin, instance):
    envelope = approved(make_envelope(instance), admin)
    credential = make_credential(envelope)
    response = signed_in(owner).post(f"/envelopes/{envelope.id}/revoke", {"reason": "done early"}, follow=True)
    assert "Envelope revoked" in response.content.decode()
    envelope.refresh_from_db()
    credential.refresh_from_db()
    assert envelope.state == "revoked" and envelope.end_reason == "done early"
    assert credential.status == Credential.Status.REVOKED


def test_completing_an_envelope(signed_in, owner, admin, instance):
    envelope = approved(make_envelope(instance), admin)
    signed_in(owner).post(f"/envelopes/{envelope.id}/complete")
    envelope.refresh_from_db()
    assert envelope.state == "completed"
    response = signed_in(owner).post(f"/envelopes/{envelope.id}/complete", follow=True)
    assert response.status_code == 200


def test_completing_a_pending_envelope_is_refused_with_the_reason(signed_in, owner, instance):
    envelope = make_envelope(instance)
    response = signed_in(owner).post(f"/envelopes/{envelope.id}/complete", follow=True)
    assert "cannot become completed" in response.content.decode()


def test_retasking_creates_a_new_pending_envelope_that_supersedes_the_old(signed_in, owner, admin, instance):
    envelope = approved(make_envelope(instance), admin)
    credential = make_credential(envelope)
    client = signed_in(owner)
    form = client.get(f"/envelopes/{envelope.id}/retask").content.decode()
    assert "triage this week" in form
    response = client.post(
        f"/envelopes/{envelope.id}/retask", _form(instance, intent="narrower task", scopes="github:read"), follow=True
    )
    new = TaskEnvelope.objects.get(supersedes=envelope)
    assert response.redirect_chain[-1][0] == f"/envelopes/{new.id}/"
    assert new.state == "pending" and new.intent == "narrower task"
    envelope.refresh_from_db()
    credential.refresh_from_db()
    assert envelope.state == "superseded" and credential.status == "revoked"


def test_a_retask_with_a_bad_field_shows_it(signed_in, owner, admin, instance):
    envelope = approved(make_envelope(instance), admin)
    response = signed_in(owner).post(f"/envelopes/{envelope.id}/retask", _form(instance, scopes="payments:approve"))
    assert response.status_code == 400 and "outside agent" in response.content.decode()
    envelope.refresh_from_db()
    assert envelope.state == "approved"


def test_an_auditor_reads_an_envelope_but_cannot_change_it(signed_in, auditor, admin, instance):
    envelope = approved(make_envelope(instance), admin)
    client = signed_in(auditor)
    assert "Read only" in client.get(f"/envelopes/{envelope.id}/").content.decode()
    assert client.post(f"/envelopes/{envelope.id}/revoke", {"reason": "x"}).status_code == 403


def test_envelope_verbs_are_csrf_protected(owner, admin, instance):
    envelope = approved(make_envelope(instance), admin)
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    assert client.post(f"/envelopes/{envelope.id}/revoke", {"reason": "x"}).status_code == 403


def test_an_admin_decides_from_the_envelope_page_and_returns_to_it(signed_in, admin, instance):
    envelope = make_envelope(instance)
    client = signed_in(admin)
    assert "Approve" in client.get(f"/envelopes/{envelope.id}/").content.decode()
    response = client.post(
        f"/approvals/{envelope.id}/approve", {"comment": "ok", "next": f"/envelopes/{envelope.id}/"}, follow=True
    )
    assert response.redirect_chain[-1][0] == f"/envelopes/{envelope.id}/"
    evil = client.post(f"/approvals/{envelope.id}/approve", {"next": "https://evil.example/"})
    assert evil["Location"] == "/approvals/"


def test_the_request_form_asks_for_audiences_and_the_approver_sees_them(signed_in, owner, admin, instance):
    mcp = "https://mcp.example.test/mcp"
    assert 'name="audiences"' in signed_in(owner).get("/envelopes/new/").content.decode()
    signed_in(owner).post("/envelopes/new/", _form(instance, audiences=f"{mcp}\nsts.amazonaws.com"))
    envelope = TaskEnvelope.objects.get()
    assert envelope.audiences == [mcp, "sts.amazonaws.com"]
    for page in ("/approvals/", f"/envelopes/{envelope.id}/"):
        shown = signed_in(admin).get(page).content.decode()
        assert mcp in shown and "sts.amazonaws.com" in shown


def test_the_request_form_defaults_to_the_deployments_audience_and_refuses_plain_http(signed_in, owner, instance):
    response = signed_in(owner).post("/envelopes/new/", _form(instance, audiences="http://mcp.example.test/"))
    assert response.status_code == 400 and "must use https" in response.content.decode()
    assert "<strong>Audiences</strong>" in response.content.decode()
    signed_in(owner).post("/envelopes/new/", _form(instance))
    assert TaskEnvelope.objects.get().audiences == ["mandate"]
