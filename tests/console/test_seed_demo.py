"""seed_demo: idempotent, the real URL, only the logins it set, data consistent with itself and the policy."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db.models import Count, F, Min, Q
from django.utils import timezone

from identities.models import Agent, Credential
from tasks.models import ActivityEvent, TaskEnvelope
from tasks.policy import active_policy

pytestmark = pytest.mark.django_db


def _seed(*args, **env) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def _shape():
    return (
        Agent.objects.count(),
        dict(TaskEnvelope.objects.values_list("state").annotate(n=Count("id")).order_by()),
        ActivityEvent.objects.count(),
        Credential.objects.count(),
    )


def test_a_second_run_changes_nothing_and_the_real_port_is_printed(monkeypatch):
    monkeypatch.setenv("PORT", "8765")
    output = _seed()
    first = _shape()
    again = _seed()
    assert _shape() == first
    assert "http://127.0.0.1:8765/login/" in output and "left as they are" in again


def test_only_logins_whose_password_it_set_are_printed(monkeypatch):
    monkeypatch.delenv("MANDATE_PASSWORD", raising=False)
    get_user_model().objects.create_user("ada", password="Quartz-Lantern-42")
    output = _seed()
    logins = output.split("Demo logins", 1)[1].split("Existing users", 1)[0]
    assert "alan" in logins and "ada " not in logins
    assert "Existing users kept their own passwords: ada" in output
    assert get_user_model().objects.get(username="ada").check_password("Quartz-Lantern-42")
    again = _seed()
    assert "Demo logins" not in again


def test_the_demo_data_is_consistent_with_itself_and_the_policy():
    _seed()
    now = timezone.now()
    assert not ActivityEvent.objects.filter(occurred_at__gt=now).exists()
    assert not Credential.objects.filter(issued_at__gt=now).exists()
    assert not TaskEnvelope.objects.filter(Q(created_at__gt=now) | Q(ended_at__gt=now)).exists()
    early = ActivityEvent.objects.filter(envelope__isnull=False, occurred_at__lt=F("envelope__created_at"))
    assert not early.exists()
    revoke_after = active_policy().drift_revoke_after
    flagged = dict(
        ActivityEvent.objects.filter(drift=True).values_list("envelope_id").annotate(n=Count("id")).order_by()
    )
    for envelope in TaskEnvelope.objects.filter(Q(drift_count__gt=0) | Q(id__in=flagged)):
        assert envelope.drift_count == flagged.get(envelope.id, 0), envelope.intent
        if revoke_after:
            assert envelope.drift_count < revoke_after, envelope.intent
    live = Credential.objects.filter(status="active", envelope__expires_at__isnull=False)
    assert not live.filter(expires_at__gt=F("envelope__expires_at")).exists()
    first_seen = ActivityEvent.objects.aggregate(first=Min("occurred_at"))["first"]
    assert first_seen is not None


# The reset empties tables with TRUNCATE on PostgreSQL, which refuses inside a transaction holding
# rows with deferred foreign-key checks: run as the command does, outside a test transaction.
@pytest.mark.django_db(transaction=True)
def test_reset_gives_the_same_known_state_however_the_database_was_changed(settings, tmp_path):
    settings.DEBUG = True
    checkpoints = tmp_path / "audit-checkpoints.jsonl"
    checkpoints.write_text('{"chain": "old"}\n')
    settings.MANDATE_AUDIT_CHECKPOINT_FILE = str(checkpoints)
    _seed()
    fresh = _shape()
    get_user_model().objects.create_user("mallory", password="Quartz-Lantern-42")
    Agent.objects.filter(slug="data-sync").update(name="renamed by hand")
    output = _seed("--reset")
    assert _shape() == fresh
    assert not get_user_model().objects.filter(username="mallory").exists()
    assert Agent.objects.get(slug="data-sync").name == "CRM data sync"
    assert "database was emptied" in output and "Demo logins" in output
    assert not checkpoints.exists()  # vouched for the emptied trail: kept aside, not deleted
    assert [p.read_text() for p in tmp_path.glob("audit-checkpoints.jsonl.before-reset-*")] == ['{"chain": "old"}\n']
    assert _seed("--reset") and _shape() == fresh


# The reset empties tables with TRUNCATE on PostgreSQL, which refuses inside a transaction holding
# rows with deferred foreign-key checks: run as the command does, outside a test transaction.
@pytest.mark.django_db(transaction=True)
def test_reset_after_a_reset_leaves_a_trail_that_verifies(settings, tmp_path):
    from audit.services import verify_chain

    settings.DEBUG = True
    settings.MANDATE_AUDIT_CHECKPOINT_FILE = str(tmp_path / "c.jsonl")
    _seed("--reset")
    result = verify_chain()
    assert result.ok and result.checked > 0


def test_reset_is_refused_outside_development(settings):
    from django.core.management.base import CommandError

    settings.DEBUG = False
    get_user_model().objects.create_user("kept", password="Quartz-Lantern-42")
    with pytest.raises(CommandError, match="only in development"):
        _seed("--reset")
    assert get_user_model().objects.filter(username="kept").exists()
