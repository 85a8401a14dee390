"""Mints racing the end of their envelope, on PostgreSQL with real parallel transactions: mints
share-lock the envelope (they never wait for each other), so the revocation either waits for a mint
in flight and revokes what it minted, or makes the mint wait and refuse."""

from __future__ import annotations

import pytest

from identities.models import Credential
from tasks import lifecycle
from tests.helpers.factories import make_agent, make_envelope, make_instance
from tests.helpers.oauth import approve, mint_in_parallel, token_form

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_no_credential_outlives_an_envelope_revoked_while_mints_run(owner, admin):
    instance = make_instance(make_agent(owner))
    envelope = approve(make_envelope(instance), admin)
    forms = [token_form(instance, envelope) for _ in range(40)]

    statuses = mint_in_parallel(
        forms, meanwhile=lambda: lifecycle.revoke_envelope(envelope=envelope, actor=owner, reason="race")
    )

    assert set(statuses) <= {200, 400} and len(statuses) == 40
    assert not Credential.objects.filter(envelope=envelope, status=Credential.Status.ACTIVE).exists()
    assert Credential.objects.filter(envelope=envelope).count() == statuses.count(200)


def test_parallel_mints_for_one_envelope_all_succeed_and_activate_it_once(owner, admin, policy_dir):
    from audit.models import AuditEvent

    policy_dir.replace("lifecycle.toml", "max_live = 10", "max_live = 100")  # the cap is not what this tests
    instance = make_instance(make_agent(owner))
    envelope = approve(make_envelope(instance), admin)
    statuses = mint_in_parallel([token_form(instance, envelope) for _ in range(24)])

    assert statuses == [200] * 24
    assert AuditEvent.objects.filter(verb="envelope.activated", target_id=str(envelope.id)).count() == 1
    assert Credential.objects.filter(envelope=envelope, status="active").count() == 24
