"""The decision's one load statement builds the same objects the ORM loads, without Model.__init__."""

from datetime import timedelta

import pytest
from django.utils import timezone

from identities.credential_jwt import mint_credential
from identities.models import Agent, Credential, Instance
from tasks import decisions, services
from tasks.models import TaskEnvelope
from tests.helpers.factories import make_agent, make_envelope, make_instance

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def _values(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in type(obj)._meta.concrete_fields}


def test_the_loaded_credential_instance_agent_and_envelope_equal_the_orms(owner, admin):
    envelope = make_envelope(make_instance(make_agent(owner)), max_actions=3)
    services.approve_envelope(envelope=envelope, actor=admin)
    mint_credential(
        instance=envelope.instance,
        envelope=envelope,
        scopes=["github:write"],
        audience="mandate",
        expires_at=timezone.now() + timedelta(minutes=5),
    )
    expected = Credential.objects.select_related("instance__agent", "envelope").get(envelope=envelope)

    loaded = decisions.load_credential(expected.jti)

    assert loaded is not None and loaded.pk == expected.pk
    for got, want, model in [
        (loaded, expected, Credential),
        (loaded.instance, expected.instance, Instance),
        (loaded.instance.agent, expected.instance.agent, Agent),
        (loaded.envelope, expected.envelope, TaskEnvelope),
    ]:
        assert type(got) is model
        assert _values(got) == _values(want)
        assert got._state.adding is False and got._state.db == "default"
    # Ordinary model behaviour still holds on the built objects: properties, saving, refreshing.
    assert loaded.envelope.remaining_actions == expected.envelope.remaining_actions == 3
    loaded.instance.save(update_fields=["last_seen_at"])
    loaded.envelope.refresh_from_db()
    assert loaded.envelope.actions_used == 0
