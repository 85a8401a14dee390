import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from posture import standing_exceptions as exception_services
from posture.models import ExportJob, StandingException
from tasks.models import ActivityEvent, TaskEnvelope
from tests.helpers.factories import make_agent, make_instance
from tests.helpers.posture import approved_envelope, credentials, event

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(owner, other_owner, admin):
    """Two owners' agents with envelopes, use, denials, drift and credentials."""
    mine = make_instance(make_agent(owner, slug="invoice-triage"))
    theirs = make_instance(make_agent(other_owner, slug="secret-project"))
    env = approved_envelope(mine, admin)
    event(env, scope="github:read", resource="repo:acme/api")
    event(env, scope="github:write", allow=False, drift=True)
    credentials(env, 3)
    other = approved_envelope(theirs, admin, scopes=("github:read",), intent="hidden work")
    event(other, scope="github:read")
    return {"mine": env, "theirs": other}


def _client(client, user):
    client.force_login(user)
    return client


def test_posture_page_shows_each_chart_with_numbers(client, auditor, world):
    response = _client(client, auditor).get(reverse("posture"))

    assert response.status_code == 200
    html = response.content.decode()
    for title in (
        "Privilege used vs granted, per agent",
        "Credential lifetimes",
        "Approval waiting times",
        "Denials and drift per day",
        "Stale and orphaned",
    ):
        assert f">{title}</title>" in html
    assert html.count("<svg") >= 5
    assert "invoice-triage" in html and "secret-project" in html
    assert reverse("posture-rows", args=["credentials"]) in html  # charts link to their rows


def test_owners_see_only_their_own_agents_on_the_posture_page(client, owner, world):
    html = _client(client, owner).get(reverse("posture")).content.decode()

    assert "invoice-triage" in html
    assert "secret-project" not in html and "hidden work" not in html
    rows = client.get(reverse("posture-rows", args=["unused"]), {"agent": "secret-project"})
    assert rows.status_code == 404


def test_the_posture_page_query_count_does_not_grow_with_agents(
    client, auditor, admin, owner, world, django_assert_max_num_queries
):
    _client(client, auditor)
    with django_assert_max_num_queries(22):
        client.get(reverse("posture"))
    for i in range(6):
        inst = make_instance(make_agent(owner, slug=f"more-{i}"), label=f"m{i}")
        env = approved_envelope(inst, admin, intent=f"task {i}")
        event(env, scope="github:read")
        credentials(env, 2)
    with django_assert_max_num_queries(22):
        response = client.get(reverse("posture"))
    assert "more-5" in response.content.decode()
    with django_assert_max_num_queries(21):
        assert client.get(reverse("posture-standards")).status_code == 200


@pytest.mark.parametrize(
    "kind",
    [
        "unused",
        "credentials",
        "approvals",
        "denied",
        "drift",
        "renewals",
        "max_duration",
        "over_minted",
        "stale_instances",
        "stale_envelopes",
        "orphaned_agents",
        "never_seen",
        "outlived_parent",
        "open_exceptions",
    ],
)
def test_every_rows_view_renders(client, auditor, world, kind):
    response = _client(client, auditor).get(reverse("posture-rows", args=[kind]), {"days": "7", "bucket": "2"})
    assert response.status_code == 200


def test_rows_views_refuse_nonsense_without_a_500(client, auditor, world):
    _client(client, auditor)
    assert client.get(reverse("posture-rows", args=["nope"])).status_code == 404
    assert client.get(reverse("posture-rows", args=["credentials"]), {"bucket": "x", "days": "abc"}).status_code == 200
    assert client.get(reverse("posture-rows", args=["denied"]), {"day": "2020-13-45"}).status_code == 200


def test_gateway_and_anonymous_users_are_kept_out(client, gateway):
    assert client.get(reverse("posture")).status_code == 302
    assert _client(client, gateway).get(reverse("posture")).status_code == 403


def test_an_owner_requests_the_suggested_narrower_envelope_in_one_click(client, owner, world):
    response = _client(client, owner).post(reverse("posture-narrow", args=[world["mine"].id]))

    assert response.status_code == 302
    new = TaskEnvelope.objects.filter(agent__slug="invoice-triage").order_by("-created_at").first()
    assert new.id != world["mine"].id and new.scopes == ["github:read"] and new.resources == ["repo:acme/*"]
    assert new.intent == world["mine"].intent


def test_owners_cannot_narrow_someone_elses_envelope_and_auditors_cannot_narrow_at_all(client, owner, auditor, world):
    assert _client(client, owner).post(reverse("posture-narrow", args=[world["theirs"].id])).status_code == 404
    before = TaskEnvelope.objects.count()
    _client(client, auditor).post(reverse("posture-narrow", args=[world["mine"].id]))
    assert TaskEnvelope.objects.count() == before


def test_standards_page_and_exports_carry_live_evidence(client, auditor, world):
    _client(client, auditor)
    html = client.get(reverse("posture-standards")).content.decode()
    assert "Short-lived, just-in-time credentials" in html
    assert "100.0 % of 3 credentials" in html
    assert "Govern" in html and "Identity and privilege abuse" in html

    body = json.loads(b"".join(client.get(reverse("posture-standards-export"), {"format": "json"})))
    assert body["audit_chain"]["ok"] is True
    assert {row["key"] for row in body["controls"]} >= {"short-lived-credentials", "least-privilege", "audit-trail"}
    csv_text = client.get(reverse("posture-standards-export"), {"format": "csv"}).content.decode()
    assert csv_text.splitlines()[0].startswith("control,how,owasp_agentic_risks")
    assert client.get(reverse("posture-standards-export"), {"format": "pdf"}).status_code == 400


def test_verify_partial_reports_the_chain(client, auditor, world):
    response = _client(client, auditor).get(reverse("posture-verify"), HTTP_HX_REQUEST="true")
    assert "Audit chain intact" in response.content.decode()


def test_streamed_evidence_export_is_scoped_and_validated(client, owner, world):
    _client(client, owner)
    response = client.get(reverse("posture-evidence-stream"), {"kind": "activity", "format": "jsonl"})
    assert response.status_code == 200 and response.streaming
    lines = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert {line["agent_id"] for line in lines[:-1]} == {str(world["mine"].agent_id)}
    assert lines[-1]["type"] == "summary"
    assert client.get(reverse("posture-evidence-stream"), {"kind": "users"}).status_code == 400
    assert client.get(reverse("posture-evidence-stream"), {"since": "yesterday"}).status_code == 400
    assert (
        client.get(reverse("posture-evidence-stream"), {"since": "2030-01-02", "until": "2030-01-01"}).status_code
        == 400
    )


def test_background_export_shows_progress_and_only_its_requester_downloads(
    client, auditor, other_owner, world, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.DATA_DIR = tmp_path
    _client(client, auditor)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("posture-export-start"), {"kind": "activity", "format": "csv"}, HTTP_HX_REQUEST="true"
        )
    assert response.status_code == 200
    job = ExportJob.objects.get()
    status = client.get(reverse("posture-export-status", args=[job.id])).content.decode()
    assert "Download" in status and "100 %" in status and "hx-trigger" not in status
    download = client.get(reverse("posture-export-download", args=[job.id]))
    assert download.status_code == 200 and b"".join(download.streaming_content).count(b"\n") == 4
    client.force_login(other_owner)
    assert client.get(reverse("posture-export-download", args=[job.id])).status_code == 404


def test_a_running_export_polls_for_progress(client, auditor, world):
    job = ExportJob.objects.create(
        requested_by=auditor, kind="audit", format="jsonl", status="running", total=100_000, done=25_000
    )
    html = _client(client, auditor).get(reverse("posture-export-status", args=[job.id])).content.decode()
    assert 'hx-trigger="every 1s"' in html and "25 %" in html


def test_exceptions_page_requests_shows_the_secret_once_and_admin_approves(client, owner, admin, world):
    _client(client, owner)
    response = client.post(
        reverse("posture-exceptions"),
        {
            "vendor": "Acme CRM",
            "agent": "invoice-triage",
            "scopes": "github:read",
            "justification": "webhook",
            "compensating_controls": "IP allow-list",
            "duration_days": "30",
            "recertify_every_days": "7",
            "issue_secret": "on",
        },
    )
    assert response.status_code == 200
    exc = StandingException.objects.get()
    html = response.content.decode()
    assert "mdx_" in html and exc.secret_prefix in html
    assert "mdx_" not in client.get(reverse("posture-exceptions")).content.decode().replace(exc.secret_prefix, "")

    client.force_login(admin)
    client.post(reverse("posture-exception-action", args=[exc.id, "approve"]), {"comment": "ok"})
    exc.refresh_from_db()
    assert exc.status == "approved"


def test_exceptions_form_names_bad_fields_without_a_500(client, owner):
    response = _client(client, owner).post(
        reverse("posture-exceptions"),
        {
            "vendor": "Acme",
            "scopes": "github:read",
            "justification": "x",
            "compensating_controls": "y",
            "duration_days": "365",
        },
    )
    assert response.status_code == 400 and "from 1 to 90" in response.content.decode()
    response = client.post(reverse("posture-exceptions"), {"vendor": "Acme", "duration_days": "lots"})
    assert response.status_code == 400


def test_the_expired_exception_is_shown_revoked_after_the_sweep(client, owner, admin, auditor):
    exc = exception_services.request_standing_exception(
        actor=owner,
        vendor="Legacy SFTP",
        justification="x",
        scopes=["github:read"],
        compensating_controls="y",
        duration_days=1,
    ).standing_exception
    exception_services.approve_standing_exception(standing_exception=exc, actor=admin)
    exception_services.expire_due_standing_exceptions(now=timezone.now() + timedelta(days=2))

    html = _client(client, auditor).get(reverse("posture-exceptions"), {"status": "expired"}).content.decode()
    assert "Legacy SFTP" in html and "hard expiry reached" in html


def test_activity_fixture_is_what_the_page_counts(world):
    assert ActivityEvent.objects.count() == 3


def test_repeated_excess_is_one_suggestion_for_the_latest_envelope(client, owner, admin, world):
    later = approved_envelope(world["mine"].instance, admin, approved_at=timezone.now() - timedelta(hours=1))
    event(later, scope="github:read", resource="repo:acme/web")

    response = _client(client, owner).get(reverse("posture"))

    [row] = response.context["suggestions"]
    assert row.envelope_id == later.id and row.repeats == 2
