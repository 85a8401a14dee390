"""Mints racing the end of their envelope, on PostgreSQL with real parallel transactions: mints
share-lock the envelope (they never wait for each other), so the revocation either waits for a mint
in flight and revokes what it minted, or makes the mint wait and refuse."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test import Client

from identities.models import Credential
from tasks import lifecycle
from tests.helpers.factories import make_agent, make_envelope, make_instance
from tests.helpers.oauth import approve, post_token, token_form

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_no_credential_outlives_an_envelope_revoked_while_mints_run(owner, admin):
    instance = make_instance(make_agent(owner))
    envelope = approve(make_envelope(instance), admin)
    forms = [token_form(instance, envelope) for _ in range(40)]
    statuses: list[int] = []
    started = threading.Barrier(5)

    def mint(batch):
        client = Client()
        started.wait()
        try:
            for form in batch:
                statuses.append(post_token(client, form).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=mint, args=(forms[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    started.wait()
    lifecycle.revoke_envelope(envelope=envelope, actor=owner, reason="race")
    for thread in threads:
        thread.join()

    assert set(statuses) <= {200, 400} and len(statuses) == 40
    assert not Credential.objects.filter(envelope=envelope, status=Credential.Status.ACTIVE).exists()
    assert Credential.objects.filter(envelope=envelope).count() == statuses.count(200)


def test_parallel_mints_for_one_envelope_all_succeed_and_activate_it_once(owner, admin, policy_dir):
    from audit.models import AuditEvent

    policy_dir.replace("lifecycle.toml", "max_live = 10", "max_live = 100")  # the cap is not what this tests
    instance = make_instance(make_agent(owner))
    envelope = approve(make_envelope(instance), admin)
    forms = [token_form(instance, envelope) for _ in range(24)]
    statuses: list[int] = []

    def mint(batch):
        client = Client()
        try:
            for form in batch:
                statuses.append(post_token(client, form).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=mint, args=(forms[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [200] * 24
    assert AuditEvent.objects.filter(verb="envelope.activated", target_id=str(envelope.id)).count() == 1
    assert Credential.objects.filter(envelope=envelope, status="active").count() == 24
