"""Notices written with the change they announce survive a broker outage and are sent exactly once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from tasks import jobs as celery_tasks
from tasks import outbox, services
from tasks.models import OutboxMessage
from tests.helpers.factories import make_agent, make_envelope, make_instance

pytestmark = pytest.mark.django_db

MEDIUM = {"scopes": ("github:write",), "resources": ("repo:acme/app",), "duration_seconds": 1800}


@pytest.fixture
def instance(owner):
    return make_instance(make_agent(owner, ceiling=("github:read", "github:write")))


@pytest.fixture
def broker(monkeypatch):
    """A broker that can be taken down and brought back; up, it runs the task in line (eager)."""

    class Broker:
        up = True
        published: list[str] = []

        def apply_async(self, args, **kwargs):
            if not self.up:
                raise ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
            self.published.append(args[0])
            return celery_tasks.deliver_notice.apply(args=args)

    fake = Broker()
    monkeypatch.setattr(celery_tasks.deliver_notice, "apply_async", fake.apply_async)
    return fake


def _later(seconds: int):
    return timezone.now() + timedelta(seconds=seconds)


def test_a_notice_written_while_the_broker_is_down_is_delivered_once_it_is_back(
    instance, admin, broker, django_capture_on_commit_callbacks
):
    broker.up = False
    with django_capture_on_commit_callbacks(execute=True):
        envelope = make_envelope(instance, **MEDIUM)
    assert mail.outbox == []
    assert outbox.relay_outbox(now=_later(60)) == 0  # still down: nothing handed over, nothing lost
    assert OutboxMessage.objects.filter(delivered_at__isnull=True).count() == 1

    broker.up = True
    assert outbox.relay_outbox(now=_later(60)) == 1
    [message] = mail.outbox
    assert message.to == ["ada@example.test"]
    assert str(envelope.id) in message.body
    # Every later relay run, and a second copy of the same message, sends nothing more.
    assert outbox.relay_outbox(now=_later(3600)) == 0
    celery_tasks.deliver_notice.apply(args=(broker.published[0],))
    assert len(mail.outbox) == 1


def test_a_message_published_twice_sends_one_mail(instance, admin, broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        make_envelope(instance, **MEDIUM)
    [row] = OutboxMessage.objects.all()
    assert row.delivered_at is not None
    assert celery_tasks.deliver_notice.apply(args=(str(row.id),)).get() == 0
    assert len(mail.outbox) == 1


def test_the_notice_is_written_with_the_change_or_not_at_all(instance, admin, broker):
    envelope = make_envelope(instance, **MEDIUM)
    before = OutboxMessage.objects.count()
    with pytest.raises(services.PermissionDenied):  # the requester may not approve: nothing changes
        services.approve_envelope(envelope=envelope, actor=envelope.requested_by)
    assert OutboxMessage.objects.count() == before


def test_a_failed_send_leaves_the_row_for_the_next_relay(
    instance, admin, broker, monkeypatch, django_capture_on_commit_callbacks
):
    import smtplib

    def refuse(*args, **kwargs):
        raise smtplib.SMTPServerDisconnected("mail server went away")

    monkeypatch.setattr("tasks.mail.send_mail", refuse)
    with django_capture_on_commit_callbacks(execute=True):
        make_envelope(instance, **MEDIUM)
    assert OutboxMessage.objects.get().delivered_at is None
    monkeypatch.undo()
    monkeypatch.setattr(celery_tasks.deliver_notice, "apply_async", broker.apply_async)
    assert outbox.relay_outbox(now=_later(60)) == 1
    assert len(mail.outbox) == 1
    assert OutboxMessage.objects.get().delivered_at is not None
