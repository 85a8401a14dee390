"""/metrics: refused anonymously, readable by an auditor's token or an allow-listed address, counting."""

from __future__ import annotations

import pytest

from console import job_runs as jobs
from tests.helpers.factories import make_agent, make_envelope, make_instance

pytestmark = pytest.mark.django_db


def _value(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_are_refused_anonymously_and_to_roles_that_do_not_read_them(client, api_client, owner, gateway):
    anonymous = client.get("/metrics")
    assert anonymous.status_code == 401
    assert "auditor" in anonymous.json()["detail"]
    assert api_client.as_user(owner).get("/metrics").status_code == 401
    assert api_client.as_user(gateway).get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer mdt_not-a-real-token").status_code == 401


def test_an_allow_listed_address_reads_them_and_a_forged_forwarded_header_does_not(client, settings):
    settings.MANDATE_METRICS_ALLOWED_IPS = ["10.1.0.0/16"]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.9", HTTP_X_FORWARDED_FOR="10.1.2.3").status_code == 401
    settings.MANDATE_TRUSTED_PROXIES = ["192.0.2.0/24"]  # now that proxy's word counts, its own hop excluded
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.9", HTTP_X_FORWARDED_FOR="10.1.2.3").status_code == 200
    assert (
        client.get("/metrics", REMOTE_ADDR="192.0.2.9", HTTP_X_FORWARDED_FOR="10.1.2.3, 203.0.113.5").status_code == 401
    )


def test_a_decision_is_counted_by_reason_and_its_latency_observed(api_client, auditor, gateway):
    reader = api_client.as_user(auditor)
    before = _value(reader.get("/metrics").content.decode(), 'mandate_decisions_total{reason="token_invalid"}')
    answer = api_client.as_user(gateway).post(
        "/api/v1/decisions", {"token": "not-a-jwt", "scope": "github:write", "resource": "repo:x"}, format="json"
    )
    assert answer.json()["reason"] == "token_invalid"
    after = reader.get("/metrics").content.decode()
    assert _value(after, 'mandate_decisions_total{reason="token_invalid"}') == before + 1
    assert 'mandate_request_duration_seconds_count{endpoint="decisions",status="2xx"}' in after


def test_database_figures_and_job_runs_are_reported(api_client, auditor, owner):
    make_envelope(make_instance(make_agent(owner)))  # medium risk: waits for approval
    jobs.record_run(name="expire_overdue_credentials", seconds=0.25, rows=7)
    jobs.record_run(name="expire_overdue_credentials", seconds=0.75, rows=3)
    text = api_client.as_user(auditor).get("/metrics").content.decode()
    assert _value(text, "mandate_pending_approvals") == 1
    assert _value(text, "mandate_live_credentials") == 0
    assert _value(text, 'mandate_job_runs_total{job="expire_overdue_credentials"}') == 2
    assert _value(text, 'mandate_job_rows_total{job="expire_overdue_credentials"}') == 10
    assert _value(text, 'mandate_job_last_duration_seconds{job="expire_overdue_credentials"}') == 0.75
    assert _value(text, 'mandate_job_last_run_timestamp_seconds{job="expire_overdue_credentials"}') > 0


def test_a_sweep_run_through_celery_is_recorded(api_client, auditor):
    from tasks.jobs import expire_overdue_credentials

    expire_overdue_credentials.apply()
    text = api_client.as_user(auditor).get("/metrics").content.decode()
    assert _value(text, 'mandate_job_runs_total{job="expire_overdue_credentials"}') == 1


def test_rows_are_read_from_what_a_sweep_returns():
    assert [jobs.rows_of(v) for v in (5, {"flagged": 2, "paused": 1}, None, True, -1)] == [5, 3, 0, 0, 0]


def test_the_age_of_the_newest_audit_checkpoint_is_reported(api_client, auditor, settings, tmp_path):
    from datetime import timedelta

    from django.utils import timezone

    from audit.checkpoints import write_checkpoint

    settings.MANDATE_AUDIT_CHECKPOINT_FILE = str(tmp_path / "checkpoints.jsonl")
    reader = api_client.as_user(auditor)
    assert "mandate_audit_checkpoint_age_seconds" not in reader.get("/metrics").content.decode()
    write_checkpoint(reason="scheduled", force=True, now=timezone.now() - timedelta(hours=2))
    text = reader.get("/metrics").content.decode()
    assert 7200 <= _value(text, "mandate_audit_checkpoint_age_seconds") < 7260
    assert 7200 <= _value(text, "mandate_audit_checkpoint_sunk_age_seconds") < 7260


def test_decisions_answered_in_an_authzen_batch_are_counted_too(api_client, auditor, gateway):
    reader = api_client.as_user(auditor)
    line = 'mandate_decisions_total{reason="token_invalid"}'
    before = _value(reader.get("/metrics").content.decode(), line)
    call = {
        "subject": {"type": "agent", "id": "spiffe://x/y", "properties": {"token": "not-a-jwt"}},
        "action": {"name": "github:write"},
        "resource": {"type": "repo", "id": "acme/api"},
    }
    answer = api_client.as_user(gateway).post("/access/v1/evaluations", {"evaluations": [call, call]}, format="json")
    assert [e["context"]["reason"] for e in answer.json()["evaluations"]] == ["token_invalid", "token_invalid"]
    assert _value(reader.get("/metrics").content.decode(), line) == before + 2
