"""An activity event names the agent, instance and envelope it is about, and those rows cannot be
deleted from under it: Django's PROTECT refuses the delete. The database holds no foreign-key
constraint for these keys (each would cost every recorded decision a lookup and a key-share lock
at commit); the writers take the ids from rows they have just read, and Mandate deletes none of
those rows."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models import ProtectedError
from django.utils import timezone

from identities.models import Agent, Instance
from tasks.models import ActivityEvent, TaskEnvelope
from tests.helpers.factories import make_agent, make_envelope, make_instance

pytestmark = pytest.mark.django_db


def _event(**about) -> ActivityEvent:
    now = timezone.now()
    return ActivityEvent.objects.create(
        kind=ActivityEvent.Kind.DECISION, reason="ok", allow=True, occurred_at=now, recorded_at=now, **about
    )


@pytest.mark.parametrize("about", ["agent", "instance", "envelope"])
def test_a_row_an_event_names_cannot_be_deleted(owner, about):
    agent = make_agent(owner)
    instance = make_instance(agent)
    envelope = make_envelope(instance)
    target = {"agent": agent, "instance": instance, "envelope": envelope}[about]
    event = _event(**{about: target})

    with pytest.raises(ProtectedError) as refused:
        target.delete()

    assert event in refused.value.protected_objects
    assert ActivityEvent.objects.filter(pk=event.pk).exists()
    assert Agent.objects.filter(pk=agent.pk).exists()
    assert Instance.objects.filter(pk=instance.pk).exists()
    assert TaskEnvelope.objects.filter(pk=envelope.pk).exists()


def test_an_event_keeps_the_rows_it_names_readable(owner):
    instance = make_instance(make_agent(owner))
    envelope = make_envelope(instance)
    event = _event(agent=instance.agent, instance=instance, envelope=envelope)

    found = ActivityEvent.objects.select_related("agent", "instance", "envelope").get(pk=event.pk)

    assert (found.agent, found.instance, found.envelope) == (instance.agent, instance, envelope)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the catalogue is PostgreSQL's")
def test_recording_an_event_costs_no_foreign_key_checks():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'",
            [ActivityEvent._meta.db_table],
        )
        assert cursor.fetchall() == []
