import pytest

from audit.services import verify_chain
from core.errors import InvalidTransition, PermissionDenied
from identities.models import Instance
from tasks import lifecycle, services
from tasks.models import TaskEnvelope
from tests.helpers.factories import make_agent, make_envelope, make_instance

pytestmark = pytest.mark.django_db


def test_a_medium_envelope_waits_for_one_admin_and_then_has_a_clock(owner, admin):
    instance = make_instance(make_agent(owner))
    envelope = make_envelope(instance)
    assert envelope.state == "pending" and envelope.risk == "medium" and envelope.required_approvals == 1
    services.approve_envelope(envelope=envelope, actor=admin, comment="fine")
    envelope.refresh_from_db()
    assert envelope.state == "approved"
    assert (envelope.expires_at - envelope.approved_at).total_seconds() == 1800
    assert verify_chain().ok


def test_nobody_approves_their_own_request(admin, owner):
    instance = make_instance(make_agent(owner))
    envelope = make_envelope(instance, actor=admin)
    with pytest.raises(PermissionDenied):
        services.approve_envelope(envelope=envelope, actor=admin)


def test_pausing_an_agent_pauses_its_instances_and_resuming_brings_them_back(owner):
    agent = make_agent(owner)
    instance = make_instance(agent)
    lifecycle.pause_agent(agent=agent, actor=owner)
    instance.refresh_from_db()
    assert instance.status == Instance.Status.PAUSED
    lifecycle.resume_agent(agent=agent, actor=owner)
    instance.refresh_from_db()
    assert instance.status == Instance.Status.ACTIVE


def test_retiring_an_instance_ends_its_live_envelope(owner, admin):
    instance = make_instance(make_agent(owner))
    envelope = make_envelope(instance)
    services.approve_envelope(envelope=envelope, actor=admin)
    lifecycle.retire_instance(instance=instance, actor=owner)
    envelope.refresh_from_db()
    assert envelope.state == TaskEnvelope.State.REVOKED
    with pytest.raises(InvalidTransition):
        lifecycle.complete_envelope(envelope=envelope, actor=owner)
