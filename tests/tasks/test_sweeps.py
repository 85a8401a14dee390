"""The scheduled sweeps: each changes exactly the rows it should, a second run changes nothing,
and two workers running the same sweep at once (PostgreSQL) change each row once."""

from __future__ import annotations

import secrets
import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import verify_chain
from identities.models import Credential, Instance
from tasks import lifecycle, services, sweeps
from tasks.models import TaskEnvelope
from tasks.policy import active_policy
from tests.helpers.factories import make_agent, make_envelope, make_instance

pytestmark = pytest.mark.django_db


def approved_envelope(instance, admin):
    envelope = make_envelope(instance)
    services.approve_envelope(envelope=envelope, actor=admin)
    envelope.refresh_from_db()
    return envelope


def credential(envelope, *, expires_in: float, status=Credential.Status.ACTIVE) -> Credential:
    now = timezone.now()
    return Credential.objects.create(
        jti=secrets.token_hex(16),
        instance=envelope.instance,
        envelope=envelope,
        scopes=list(envelope.scopes),
        audience="mandate",
        issued_at=now - timedelta(seconds=60),
        expires_at=now + timedelta(seconds=expires_in),
        status=status,
        kid="test-kid",
    )


def events(verb: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(verb=verb))


def expired_jtis() -> list[str]:
    """Every jti the chunk events list, one entry per listing (a jti listed twice shows twice)."""
    return [jti for event in events("credentials.expired") for jti in event.after["jtis"]]


# --- credentials ---------------------------------------------------------------------------------


def test_overdue_credentials_expire_and_nothing_else_changes(owner, other_owner, admin):
    envelope = approved_envelope(make_instance(make_agent(owner)), admin)
    other = approved_envelope(make_instance(make_agent(other_owner, slug="other-agent")), admin)
    overdue = [credential(envelope, expires_in=-5), credential(other, expires_in=-1)]
    live = credential(envelope, expires_in=300)
    revoked = credential(envelope, expires_in=-5, status=Credential.Status.REVOKED)

    assert sweeps.expire_overdue_credentials() == 2

    for row in overdue:
        row.refresh_from_db()
        assert row.status == Credential.Status.EXPIRED and row.revoked_at is None
    live.refresh_from_db()
    revoked.refresh_from_db()
    assert live.status == Credential.Status.ACTIVE
    assert revoked.status == Credential.Status.REVOKED
    expired = events("credentials.expired")
    # One event per agent in the chunk, each listing its agent's jtis.
    assert sorted(expired_jtis()) == sorted(c.jti for c in overdue)
    assert sorted(str(e.agent_id) for e in expired) == sorted(str(a) for a in (envelope.agent_id, other.agent_id))
    for event in expired:
        assert event.actor_type == "scheduler" and event.before == {"status": "active"}
        assert event.after["status"] == "expired" and event.after["count"] == len(event.after["jtis"]) == 1
    assert not events("credential.expired")
    assert verify_chain().ok


def test_a_second_credential_sweep_changes_nothing(owner, admin):
    envelope = approved_envelope(make_instance(make_agent(owner)), admin)
    for _ in range(3):
        credential(envelope, expires_in=-1)
    assert sweeps.expire_overdue_credentials() == 3
    assert sweeps.expire_overdue_credentials() == 0
    assert len(events("credentials.expired")) == 1 and len(expired_jtis()) == 3


def test_the_credential_sweep_works_in_chunks_and_keeps_every_chain_intact(owner, other_owner, admin):
    envelopes = [
        approved_envelope(make_instance(make_agent(owner)), admin),
        approved_envelope(make_instance(make_agent(other_owner, slug="second")), admin),
    ]
    rows = [credential(envelopes[i % 2], expires_in=-i - 1) for i in range(25)]
    assert sweeps.expire_overdue_credentials(chunk_size=4) == 25
    assert Credential.objects.filter(jti__in=[r.jti for r in rows], status="expired").count() == 25
    assert sorted(expired_jtis()) == sorted(r.jti for r in rows)
    result = verify_chain()
    assert result.ok, result.first_bad


def test_bulk_audit_rows_interleave_with_single_rows_on_the_same_chain(owner, admin):
    envelope = approved_envelope(make_instance(make_agent(owner)), admin)
    credential(envelope, expires_in=-1)
    sweeps.expire_overdue_credentials()
    lifecycle.revoke_envelope(envelope=envelope, actor=owner, reason="done")  # a single record() after
    credential(envelope, expires_in=-1)
    sweeps.expire_overdue_credentials()
    assert verify_chain().ok


def test_one_bad_chunk_falls_back_to_rows_and_skips_only_the_bad_one(owner, admin, monkeypatch):
    envelope = approved_envelope(make_instance(make_agent(owner)), admin)
    good = [credential(envelope, expires_in=-2) for _ in range(3)]
    bad = credential(envelope, expires_in=-1)
    real = sweeps.record_expired_credentials

    def record_expired_credentials(*, expired, **kwargs):
        if any(jti == bad.jti for _, jti in expired):
            raise RuntimeError("a broken row")
        return real(expired=expired, **kwargs)

    monkeypatch.setattr(sweeps, "record_expired_credentials", record_expired_credentials)
    assert sweeps.expire_overdue_credentials() == 3
    assert Credential.objects.filter(jti__in=[g.jti for g in good], status="expired").count() == 3
    bad.refresh_from_db()
    assert bad.status == Credential.Status.ACTIVE


# --- envelopes -----------------------------------------------------------------------------------


def test_overdue_live_envelopes_expire_and_their_credentials_are_revoked(owner, admin):
    instance = make_instance(make_agent(owner))
    overdue = approved_envelope(instance, admin)
    current = approved_envelope(instance, admin)
    pending = make_envelope(instance)
    TaskEnvelope.objects.filter(pk=overdue.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    held = credential(overdue, expires_in=120)
    kept = credential(current, expires_in=120)

    assert sweeps.expire_overdue_envelopes() == 1
    assert sweeps.expire_overdue_envelopes() == 0

    overdue.refresh_from_db()
    current.refresh_from_db()
    pending.refresh_from_db()
    held.refresh_from_db()
    kept.refresh_from_db()
    assert overdue.state == TaskEnvelope.State.EXPIRED and overdue.end_reason == "expired"
    assert current.state == TaskEnvelope.State.APPROVED
    assert pending.state == TaskEnvelope.State.PENDING
    assert held.status == Credential.Status.REVOKED and kept.status == Credential.Status.ACTIVE
    assert [e.target_id for e in events("envelope.expired")] == [str(overdue.id)]
    assert verify_chain().ok


def test_one_envelope_that_fails_does_not_stop_the_others(owner, admin, monkeypatch):
    instance = make_instance(make_agent(owner))
    first, second = approved_envelope(instance, admin), approved_envelope(instance, admin)
    TaskEnvelope.objects.filter(pk__in=[first.pk, second.pk]).update(expires_at=timezone.now() - timedelta(seconds=1))
    real = lifecycle.expire_envelope

    def expire(*, envelope_id, **kwargs):
        if envelope_id == first.pk:
            raise RuntimeError("a broken row")
        return real(envelope_id=envelope_id, **kwargs)

    monkeypatch.setattr(lifecycle, "expire_envelope", expire)
    assert sweeps.expire_overdue_envelopes() == 1
    second.refresh_from_db()
    assert second.state == TaskEnvelope.State.EXPIRED


def test_pending_requests_nobody_decided_expire_and_fresh_ones_wait(owner):
    instance = make_instance(make_agent(owner))
    old, fresh = make_envelope(instance), make_envelope(instance)
    limit = active_policy().pending_max_seconds
    TaskEnvelope.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(seconds=limit + 5))

    assert sweeps.expire_pending_requests() == 1
    assert sweeps.expire_pending_requests() == 0
    old.refresh_from_db()
    fresh.refresh_from_db()
    assert old.state == TaskEnvelope.State.EXPIRED
    assert fresh.state == TaskEnvelope.State.PENDING
    assert [e.target_id for e in events("envelope.expired")] == [str(old.id)]


# --- stale sessions ------------------------------------------------------------------------------


def _idle(instance, seconds: int):
    Instance.objects.filter(pk=instance.pk).update(last_seen_at=timezone.now() - timedelta(seconds=seconds))


def test_an_idle_instance_with_live_credentials_is_flagged_and_busy_or_empty_ones_are_not(owner, admin):
    agent = make_agent(owner)
    idle, busy, empty = (make_instance(agent, label=x) for x in ("idle", "busy", "empty"))
    limit = active_policy().idle_limit_seconds
    for instance in (idle, busy):
        credential(approved_envelope(instance, admin), expires_in=300)
    _idle(idle, limit + 60)
    _idle(empty, limit + 60)
    Instance.objects.filter(pk=busy.pk).update(last_seen_at=timezone.now())

    assert sweeps.flag_stale_sessions() == 1
    assert sweeps.flag_stale_sessions() == 0
    flags = dict(Instance.objects.values_list("label", "stale"))
    assert flags == {"idle": True, "busy": False, "empty": False}
    assert Instance.objects.get(pk=idle.pk).stale_since is not None
    assert [e.target_id for e in events("instance.flagged_stale")] == [str(idle.id)]
    assert Instance.objects.get(pk=idle.pk).status == Instance.Status.ACTIVE  # the built-in policy does not pause


def test_an_active_envelope_whose_instance_stopped_acting_is_flagged_and_cleared_when_it_acts(owner, admin):
    instance = make_instance(make_agent(owner))
    envelope = approved_envelope(instance, admin)
    TaskEnvelope.objects.filter(pk=envelope.pk).update(state=TaskEnvelope.State.ACTIVE)
    credential(envelope, expires_in=300)
    _idle(instance, active_policy().idle_limit_seconds + 60)

    assert sweeps.flag_stale_sessions() == 2  # the instance and its envelope
    envelope.refresh_from_db()
    assert envelope.stale is True

    Instance.objects.filter(pk=instance.pk).update(last_seen_at=timezone.now())
    assert sweeps.flag_stale_sessions() == 2  # both flags clear
    assert sweeps.flag_stale_sessions() == 0
    instance.refresh_from_db()
    envelope.refresh_from_db()
    assert instance.stale is False and instance.stale_since is None and envelope.stale is False
    assert len(events("instance.stale_cleared")) == 1 and len(events("envelope.stale_cleared")) == 1
    assert verify_chain().ok


def test_a_policy_that_pauses_stale_instances_pauses_them_and_revokes_their_credentials(owner, admin, monkeypatch):
    import dataclasses

    from tasks import policy as policy_module

    instance = make_instance(make_agent(owner))
    held = credential(approved_envelope(instance, admin), expires_in=300)
    _idle(instance, active_policy().idle_limit_seconds + 60)

    @dataclasses.dataclass(frozen=True)
    class PausingPolicy(type(active_policy())):
        pause_stale_instances: bool = True

    pausing = PausingPolicy(**{f.name: getattr(active_policy(), f.name) for f in dataclasses.fields(active_policy())})
    monkeypatch.setattr(sweeps, "active_policy", lambda: pausing)
    monkeypatch.setattr(policy_module, "active_policy", lambda: pausing)

    assert sweeps.flag_stale_sessions() == 1
    instance.refresh_from_db()
    held.refresh_from_db()
    assert instance.stale and instance.status == Instance.Status.PAUSED
    assert held.status == Credential.Status.REVOKED


# --- keys ----------------------------------------------------------------------------------------


def test_key_sweeps_rotate_then_activate_after_the_refresh_hint_then_retire_the_drained_key():
    from identities.keys import REFRESH_HINT_SECONDS
    from identities.models import SigningKey

    assert sweeps.rotate_signing_keys() == 1  # no key signs yet: the first one signs at once
    first = SigningKey.objects.get()
    assert first.status == SigningKey.Status.ACTIVE

    sweeps.rotate_signing_keys()
    second = SigningKey.objects.exclude(pk=first.pk).get()
    assert second.status == SigningKey.Status.PUBLISHED
    assert sweeps.activate_published_keys() == 0  # verifiers have not had a refresh hint yet

    later = timezone.now() + timedelta(seconds=REFRESH_HINT_SECONDS + 1)
    assert sweeps.activate_published_keys(now=later) == 1
    assert sweeps.activate_published_keys(now=later) == 0
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == (SigningKey.Status.RETIRING, SigningKey.Status.ACTIVE)

    assert sweeps.retire_drained_keys() == 0  # its tokens may still be live
    drained = timezone.now() + timedelta(days=1)
    assert sweeps.retire_drained_keys(now=drained) == 1
    assert sweeps.retire_drained_keys(now=drained) == 0
    first.refresh_from_db()
    assert first.status == SigningKey.Status.RETIRED
    assert AuditEvent.objects.filter(verb="key.retired", actor_type="scheduler").count() == 1
    assert verify_chain().ok


# --- two workers at once (PostgreSQL) ------------------------------------------------------------


def _run_in_threads(fn, n: int = 4) -> list:
    results, errors = [], []
    barrier = threading.Barrier(n)

    def work():
        try:
            barrier.wait()
            results.append(fn())
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    return results


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_four_workers_expiring_credentials_at_once_expire_each_row_once(owner, other_owner, admin):
    envelopes = [
        approved_envelope(make_instance(make_agent(owner)), admin),
        approved_envelope(make_instance(make_agent(other_owner, slug="second")), admin),
    ]
    rows = [credential(envelopes[i % 2], expires_in=-1 - i % 7) for i in range(400)]
    counts = _run_in_threads(lambda: sweeps.expire_overdue_credentials(chunk_size=25))
    assert sum(counts) == 400
    assert len(expired_jtis()) == 400 and len(set(expired_jtis())) == 400
    assert Credential.objects.filter(jti__in=[r.jti for r in rows], status="expired").count() == 400
    assert verify_chain().ok


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_four_workers_expiring_envelopes_and_pending_requests_at_once_do_each_once(owner, admin):
    instance = make_instance(make_agent(owner))
    live = [approved_envelope(instance, admin) for _ in range(6)]
    pending = [make_envelope(instance) for _ in range(6)]
    TaskEnvelope.objects.filter(pk__in=[e.pk for e in live]).update(expires_at=timezone.now() - timedelta(seconds=1))
    TaskEnvelope.objects.filter(pk__in=[e.pk for e in pending]).update(
        created_at=timezone.now() - timedelta(seconds=active_policy().pending_max_seconds + 5)
    )
    for envelope in live:
        credential(envelope, expires_in=300)

    assert sum(_run_in_threads(sweeps.expire_overdue_envelopes)) == 6
    assert sum(_run_in_threads(sweeps.expire_pending_requests)) == 6
    assert len(events("envelope.expired")) == 12
    assert len(events("credential.revoked")) == 6
    assert verify_chain().ok


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_four_workers_flagging_stale_sessions_at_once_flag_each_once(owner, admin):
    agent = make_agent(owner)
    instances = [make_instance(agent, label=f"w{i}") for i in range(5)]
    for instance in instances:
        credential(approved_envelope(instance, admin), expires_in=300)
        _idle(instance, active_policy().idle_limit_seconds + 60)
    assert sum(_run_in_threads(sweeps.flag_stale_sessions)) == 5
    assert len(events("instance.flagged_stale")) == 5


# --- expiry recorded per chunk, findable per jti ----------------------------------------------------


def test_a_chunk_event_lists_at_most_the_bound_of_jtis_and_stays_chained(owner, admin, monkeypatch):
    from audit import batch as audit_batch

    monkeypatch.setattr(audit_batch, "JTIS_PER_EVENT", 3)
    envelope = approved_envelope(make_instance(make_agent(owner)), admin)
    rows = [credential(envelope, expires_in=-1) for _ in range(7)]
    assert sweeps.expire_overdue_credentials() == 7
    sizes = sorted(len(e.after["jtis"]) for e in events("credentials.expired"))
    assert sizes == [1, 3, 3]
    assert sorted(expired_jtis()) == sorted(r.jti for r in rows)
    assert verify_chain().ok


def test_a_credential_expired_in_a_chunk_is_found_by_its_jti_in_the_api_and_the_console(
    owner, admin, api_client, client
):
    envelope = approved_envelope(make_instance(make_agent(owner)), admin)
    wanted, *_others = [credential(envelope, expires_in=-1) for _ in range(5)]
    sweeps.expire_overdue_credentials()
    chunk_event = AuditEvent.objects.get(verb="credentials.expired")

    for target in (wanted.jti, f"credential:{wanted.jti}"):
        found = api_client.as_user(admin).get("/api/v1/audit/", {"target": target}).json()["results"]
        assert chunk_event.id in {row["id"] for row in found}, target
        assert all(wanted.jti in row["after"]["jtis"] for row in found if row["verb"] == "credentials.expired")

    client.force_login(admin)
    html = client.get("/audit/", {"target": f"credential:{wanted.jti}"}).content.decode()
    assert "credentials.expired" in html
    unrelated = client.get("/audit/", {"target": "credential:no-such-jti"}).content.decode()
    assert "credentials.expired" not in unrelated
