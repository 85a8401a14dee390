"""Audit appends racing on one chain, on PostgreSQL with real parallel transactions: the head's
UPDATE … RETURNING serialises them, so every row gets the next seq and links to the one before."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection, transaction

from audit import services as audit
from audit.models import AuditChain, AuditEvent

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_parallel_appends_to_a_new_chain_link_into_one_verifiable_chain():
    agent_id = uuid.uuid4()
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def append(worker):
        try:
            barrier.wait()
            for i in range(10):
                with transaction.atomic():
                    audit.record(
                        "test.appended",
                        actor=audit.Actor.system(),
                        target=("thing", f"{worker}-{i}"),
                        agent_id=agent_id,
                    )
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=append, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    chain = f"agent:{agent_id}"
    assert AuditChain.objects.get(key=chain).length == 40
    assert sorted(AuditEvent.objects.filter(chain=chain).values_list("seq", flat=True)) == list(range(1, 41))
    assert audit.verify_chain().ok
