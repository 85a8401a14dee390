"""The last action of a budget, asked for by several gateways at once, is given exactly once."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from identities.credential_jwt import mint_credential
from tasks import decisions, services
from tasks.models import ActivityEvent, TaskEnvelope
from tests.helpers.factories import make_agent, make_envelope, make_instance

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _race(token, callers: int) -> list[decisions.Decision]:
    barrier = threading.Barrier(callers)
    answers, errors = [], []

    def gateway():
        try:
            barrier.wait()
            answers.append(
                decisions.decide(token=token, scope="github:write", resource="repo:acme/api", reported_by="gate")
            )
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=gateway) for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    return answers


def _envelope(owner, admin, max_actions):
    envelope = make_envelope(make_instance(make_agent(owner)), max_actions=max_actions)
    services.approve_envelope(envelope=envelope, actor=admin)
    envelope.refresh_from_db()
    token = mint_credential(
        instance=envelope.instance,
        envelope=envelope,
        scopes=["github:write"],
        audience="mandate",
        expires_at=timezone.now() + timedelta(minutes=5),
    ).token
    return envelope, token


def test_two_gateways_racing_on_the_last_action_get_exactly_one_allow(owner, admin):
    envelope, token = _envelope(owner, admin, max_actions=1)
    answers = _race(token, callers=2)
    assert sorted(a.reason for a in answers) == ["budget_exhausted", "ok"]
    assert TaskEnvelope.objects.get(pk=envelope.pk).actions_used == 1
    assert ActivityEvent.objects.filter(kind="decision").count() == 2


def test_many_gateways_never_overspend_a_budget(owner, admin):
    envelope, token = _envelope(owner, admin, max_actions=5)
    answers = _race(token, callers=16)
    assert sum(a.allow for a in answers) == 5
    assert sorted(a.remaining_actions for a in answers if a.allow) == [0, 1, 2, 3, 4]
    assert TaskEnvelope.objects.get(pk=envelope.pk).actions_used == 5
    assert ActivityEvent.objects.filter(kind="decision", allow=True).count() == 5
    assert ActivityEvent.objects.filter(kind="decision").count() == 16


def test_the_single_statement_path_counts_down_and_records_each_answer(owner, admin):
    envelope, token = _envelope(owner, admin, max_actions=2)
    answers = [decisions.decide(token=token, scope="github:write", resource="repo:acme/api") for _ in range(3)]
    assert [(a.reason, a.remaining_actions) for a in answers] == [("ok", 1), ("ok", 0), ("budget_exhausted", 0)]
    events = {e.id: e for e in ActivityEvent.objects.filter(kind="decision")}
    assert [(events[a.decision_id].allow, events[a.decision_id].reason) for a in answers] == [
        (True, "ok"),
        (True, "ok"),
        (False, "budget_exhausted"),
    ]
    recorded = events[answers[0].decision_id]
    assert recorded.envelope_id == envelope.id and recorded.instance_id == envelope.instance_id
    assert recorded.agent_id == envelope.agent_id and recorded.jti and recorded.policy_version


def test_an_envelope_that_ends_between_check_and_update_is_recorded_as_inactive(owner, admin):
    envelope, _ = _envelope(owner, admin, max_actions=5)
    TaskEnvelope.objects.filter(pk=envelope.pk).update(state="revoked")
    event = ActivityEvent(
        kind="decision",
        agent_id=envelope.agent_id,
        instance_id=envelope.instance_id,
        envelope_id=envelope.id,
        jti="j",
        scope="github:write",
        resource="repo:acme/api",
        policy_version="v",
        details={},
        reported_by="gate",
    )
    reason, remaining = decisions._take_action_and_record(event, timezone.now())
    assert (reason, remaining) == ("envelope_inactive", None)
    stored = ActivityEvent.objects.get(pk=event.id)
    assert (stored.allow, stored.reason) == (False, "envelope_inactive")
    assert TaskEnvelope.objects.get(pk=envelope.pk).actions_used == 0


def test_an_allowed_decision_is_two_statements_on_postgresql(owner, admin, gateway):
    from django.test.utils import CaptureQueriesContext
    from rest_framework.test import APIClient

    from accounts.models import ApiToken

    _, token = _envelope(owner, admin, max_actions=10)
    secret = ApiToken.new_secret()
    ApiToken.objects.create(user=gateway, name="gw", prefix=secret[:8], digest=ApiToken.digest_of(secret))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    body = {"token": token, "scope": "github:write", "resource": "repo:acme/api"}
    assert client.post("/api/v1/decisions", body, format="json").json()["reason"] == "ok"  # warm caches
    with CaptureQueriesContext(connection) as queries:
        assert client.post("/api/v1/decisions", body, format="json").json()["remaining_actions"] == 8
    assert len(queries) == 2, [q["sql"][:80] for q in queries]


# --- batches (AuthZEN /access/v1/evaluations) -------------------------------------------------------


def _race_batches(token, *, callers: int, items: int) -> list[list[decisions.Decision]]:
    barrier = threading.Barrier(callers)
    answers, errors = [], []
    call = decisions.Call(token=token, scope="github:write", resource="repo:acme/api", context={})

    def gateway():
        try:
            barrier.wait()
            answers.append(decisions.decide_batch([call] * items, reported_by="gate"))
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=gateway) for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return answers


def test_parallel_batches_spend_the_budget_exactly_once_per_allowed_item(owner, admin):
    envelope, token = _envelope(owner, admin, max_actions=25)
    batches = _race_batches(token, callers=6, items=10)
    allowed = [d for batch in batches for d in batch if d.allow]
    assert len(allowed) == 25
    # Every action of the budget went to exactly one allowed item, whichever batch it was in.
    assert sorted(d.remaining_actions for d in allowed) == list(range(25))
    # Within each batch the budget runs out in request order: its allowed items come first.
    for batch in batches:
        flags = [d.allow for d in batch]
        assert flags == sorted(flags, reverse=True)
        assert all(d.reason == "budget_exhausted" for d in batch if not d.allow)
    assert TaskEnvelope.objects.get(pk=envelope.pk).actions_used == 25
    assert ActivityEvent.objects.filter(kind="decision", allow=True).count() == 25
    assert ActivityEvent.objects.filter(kind="decision").count() == 60


def test_parallel_batches_and_single_decisions_share_one_budget(owner, admin):
    envelope, token = _envelope(owner, admin, max_actions=12)
    barrier = threading.Barrier(4)
    results, errors = [], []
    call = decisions.Call(token=token, scope="github:write", resource="repo:acme/api", context={})

    def batch():
        try:
            barrier.wait()
            results.extend(decisions.decide_batch([call] * 8, reported_by="gate"))
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    def single():
        try:
            barrier.wait()
            for _ in range(8):
                results.append(decisions.decide(token=token, scope="github:write", resource="repo:acme/api"))
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=f) for f in (batch, batch, single, single)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sum(d.allow for d in results) == 12
    assert TaskEnvelope.objects.get(pk=envelope.pk).actions_used == 12
    assert ActivityEvent.objects.filter(kind="decision", allow=True).count() == 12
    assert ActivityEvent.objects.filter(kind="decision").count() == 32
