"""Approvers hear of pending work, requesters of the decision — by email, after commit, never blocking."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core import mail
from django.utils import timezone

from accounts.roles import IDENTITY_ADMIN
from tasks import lifecycle, services
from tasks.mail import send_envelope_notice
from tasks.models import TaskEnvelope
from tasks.policy import active_policy
from tests.helpers.factories import make_agent, make_envelope, make_instance

pytestmark = pytest.mark.django_db

MEDIUM = {"scopes": ("github:write",), "resources": ("repo:acme/app",), "duration_seconds": 1800}
HIGH = {"scopes": ("secrets:read",), "resources": ("vault:ci/deploy-key",), "duration_seconds": 1800}
LOW = {"scopes": ("github:read",), "resources": ("repo:acme/app",), "duration_seconds": 900, "max_actions": 100}


@pytest.fixture
def instance(owner):
    return make_instance(make_agent(owner, ceiling=("github:read", "github:write", "secrets:read")))


@pytest.fixture
def admins(admin, second_admin):
    return admin, second_admin


def test_approvers_hear_of_a_pending_request_only_after_it_commits(
    instance, admins, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        envelope = make_envelope(instance, **MEDIUM)
    assert len(mail.outbox) == 0 and len(callbacks) == 1  # nothing sent inside the transaction
    callbacks[0]()
    [message] = mail.outbox
    assert sorted(message.to) == ["ada@example.test", "alan@example.test"]
    assert message.subject == "[Mandate] medium-risk envelope for invoice-triage awaits approval"
    assert "olivia asks for a medium-risk envelope (1 approval(s) needed)." in message.body
    assert str(envelope.id) in message.body and envelope.policy_version in message.body


def test_a_rolled_back_request_tells_nobody(instance, admins, django_capture_on_commit_callbacks):
    from django.db import transaction

    def request_that_fails_after_the_envelope():
        with transaction.atomic():
            make_envelope(instance, **MEDIUM)
            raise RuntimeError("the rest of the request failed")

    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(RuntimeError):
        request_that_fails_after_the_envelope()
    assert callbacks == [] and mail.outbox == []


def test_the_requester_and_a_high_risk_owner_are_not_asked_to_approve(
    owner, admins, django_user_model, django_capture_on_commit_callbacks
):
    admin, _second_admin = admins
    owner.groups.add(Group.objects.get(name=IDENTITY_ADMIN))
    django_user_model.objects.create_superuser("boss", "boss@example.test", "pw")
    instance = make_instance(make_agent(owner, ceiling=("secrets:read",)))
    with django_capture_on_commit_callbacks(execute=True):
        make_envelope(instance, actor=admin, **HIGH)
    [message] = mail.outbox
    assert sorted(message.to) == ["alan@example.test", "boss@example.test"]


def test_an_auto_approved_request_bothers_no_approver(instance, admins, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        envelope = make_envelope(instance, **LOW)
    assert envelope.state == "approved" and callbacks == [] and mail.outbox == []


def test_the_requester_learns_of_an_approval_once_the_quorum_is_reached(
    instance, admins, django_capture_on_commit_callbacks
):
    admin, second_admin = admins
    envelope = make_envelope(instance, **HIGH)
    with django_capture_on_commit_callbacks(execute=True):
        services.approve_envelope(envelope=envelope, actor=admin)
    assert mail.outbox == []  # one of two approvals: nothing decided yet
    with django_capture_on_commit_callbacks(execute=True):
        services.approve_envelope(envelope=envelope, actor=second_admin)
    [message] = mail.outbox
    assert message.to == ["olivia@example.test"]
    assert message.subject == "[Mandate] your envelope for invoice-triage was approved"


def test_the_requester_learns_of_a_denial_and_why(instance, admin, django_capture_on_commit_callbacks):
    envelope = make_envelope(instance, **MEDIUM)
    with django_capture_on_commit_callbacks(execute=True):
        services.deny_envelope(envelope=envelope, actor=admin, comment="use the staging repo")
    [message] = mail.outbox
    assert message.to == ["olivia@example.test"]
    assert message.subject == "[Mandate] your envelope for invoice-triage was denied"
    assert "Reason: use the staging repo" in message.body


def test_the_requester_learns_that_nobody_decided_in_time(instance, django_capture_on_commit_callbacks):
    envelope = make_envelope(instance, **MEDIUM)
    TaskEnvelope.objects.filter(pk=envelope.pk).update(
        created_at=timezone.now() - timedelta(seconds=active_policy().pending_max_seconds + 1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert lifecycle.expire_pending_requests() == 1
    [message] = mail.outbox
    assert message.subject == "[Mandate] your envelope for invoice-triage expired: nobody decided in time"


def test_a_broker_that_is_down_never_fails_the_request_and_the_notice_waits_in_the_outbox(
    instance, admin, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    from tasks import jobs as celery_tasks
    from tasks.models import OutboxMessage

    def down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(celery_tasks.deliver_notice, "apply_async", down)
    with (
        caplog.at_level(logging.WARNING, logger="tasks.outbox"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        envelope = make_envelope(instance, **MEDIUM)
    envelope.refresh_from_db()
    assert envelope.state == "pending"
    assert "waits in the outbox" in caplog.text
    [waiting] = OutboxMessage.objects.all()
    assert (waiting.kind, waiting.envelope_id, waiting.delivered_at) == ("pending", envelope.id, None)
    assert mail.outbox == []


def test_a_late_pending_notice_for_a_decided_envelope_is_dropped(instance, admin):
    envelope = make_envelope(instance, **MEDIUM)
    services.approve_envelope(envelope=envelope, actor=admin)
    assert send_envelope_notice(kind="pending", envelope_id=str(envelope.id)) == 0


def test_nobody_with_an_email_means_no_mail(instance, admin):
    admin.email = ""
    admin.save()
    envelope = make_envelope(instance, **MEDIUM)
    assert send_envelope_notice(kind="pending", envelope_id=str(envelope.id)) == 0
    assert send_envelope_notice(kind="pending", envelope_id="7b0e8a44-0000-4000-8000-000000000000") == 0
    assert send_envelope_notice(kind="unknown", envelope_id=str(envelope.id)) == 0


def test_the_notice_links_to_the_console_when_its_address_is_known(instance, admin, settings):
    settings.MANDATE_PUBLIC_URL = "https://mandate.example.test"
    envelope = make_envelope(instance, **MEDIUM)
    send_envelope_notice(kind="pending", envelope_id=str(envelope.id))
    assert f"https://mandate.example.test/envelopes/{envelope.id}/" in mail.outbox[-1].body


def test_the_celery_task_sends_the_notice(instance, admin):
    from tasks.jobs import notify_envelope

    envelope = make_envelope(instance, **MEDIUM)
    notify_envelope.apply(args=("pending", str(envelope.id))).get()
    assert mail.outbox[-1].to == ["ada@example.test"]
