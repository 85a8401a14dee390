"""An instance may complete its own envelope with its own credential, and nothing else."""

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from identities.credential_jwt import mint_credential
from identities.models import Credential
from tasks import services
from tests.helpers.factories import make_agent, make_envelope, make_instance

pytestmark = pytest.mark.django_db


def live(instance, admin, **kw):
    envelope = make_envelope(instance, **kw)
    services.approve_envelope(envelope=envelope, actor=admin)
    envelope.refresh_from_db()
    return envelope


def credential_for(envelope):
    return mint_credential(
        instance=envelope.instance,
        envelope=envelope,
        scopes=list(envelope.scopes),
        audience="mandate",
        expires_at=timezone.now() + timedelta(minutes=5),
    )


def as_agent(api_client, token):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api_client


def test_an_instance_completes_its_own_envelope_with_its_credential(api_client, owner, admin):
    envelope = live(make_instance(make_agent(owner)), admin)
    minted = credential_for(envelope)
    response = as_agent(api_client, minted.token).post(f"/api/v1/envelopes/{envelope.id}/complete")
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "completed"
    assert Credential.objects.get(jti=minted.credential.jti).status == "revoked"
    event = AuditEvent.objects.get(verb="envelope.completed", target_id=str(envelope.id))
    assert event.actor_type == "instance" and event.actor == envelope.instance.spiffe_id


def test_an_instance_cannot_complete_another_envelope_even_of_its_own_agent(api_client, owner, admin):
    agent = make_agent(owner)
    mine = live(make_instance(agent, label="a"), admin)
    other = live(make_instance(agent, label="b"), admin)
    token = credential_for(mine).token
    response = as_agent(api_client, token).post(f"/api/v1/envelopes/{other.id}/complete")
    assert response.status_code == 404
    other.refresh_from_db()
    assert other.state == "approved"


def test_an_instance_credential_reads_and_changes_nothing_else(api_client, owner, admin):
    envelope = live(make_instance(make_agent(owner)), admin)
    client = as_agent(api_client, credential_for(envelope).token)
    assert client.get("/api/v1/envelopes/").status_code in (401, 403)
    assert client.post(f"/api/v1/envelopes/{envelope.id}/revoke", {"reason": "x"}, format="json").status_code in (
        401,
        403,
    )
    envelope.refresh_from_db()
    assert envelope.state == "approved"


def test_a_revoked_credential_cannot_complete(api_client, owner, admin):
    envelope = live(make_instance(make_agent(owner)), admin)
    minted = credential_for(envelope)
    Credential.objects.filter(jti=minted.credential.jti).update(status="revoked")
    response = as_agent(api_client, minted.token).post(f"/api/v1/envelopes/{envelope.id}/complete")
    assert response.status_code == 401
    envelope.refresh_from_db()
    assert envelope.state == "approved"
