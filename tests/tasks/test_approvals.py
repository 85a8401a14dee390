"""Approval workflow: quorum by risk, auto-approval only by a named rule, separation of duties,
deny and re-task, pending expiry, the inbox, the audit trail — and the approval race on PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connections
from django.utils import timezone

from accounts.roles import IDENTITY_ADMIN
from audit.models import AuditEvent
from audit.services import verify_chain
from core.errors import InvalidTransition, PermissionDenied, ValidationFailed
from tasks import lifecycle, services
from tasks.models import Approval, TaskEnvelope
from tasks.policy import active_policy
from tasks.selectors import pending_inbox_count
from tests.helpers.factories import make_agent, make_envelope, make_instance

State = TaskEnvelope.State
LOW = {"scopes": ("github:read",), "resources": ("repo:acme/app",), "duration_seconds": 900, "max_actions": 100}
MEDIUM = {"scopes": ("github:write",), "resources": ("repo:acme/app",), "duration_seconds": 1800}
HIGH = {"scopes": ("secrets:read",), "resources": ("vault:ci/deploy-key",), "duration_seconds": 1800}
CEILING = ("github:read", "github:write", "jira:read", "secrets:read")


def events(envelope, verb=None):
    qs = AuditEvent.objects.filter(target_type="envelope", target_id=str(envelope.id)).order_by("id")
    return list(qs.filter(verb=verb) if verb else qs)


def make_admin(django_user_model, username):
    user = django_user_model.objects.create_user(username=username, email=f"{username}@example.test")
    user.groups.add(Group.objects.get_or_create(name=IDENTITY_ADMIN)[0])
    return user


@pytest.fixture
def instance(owner):
    return make_instance(make_agent(owner, ceiling=CEILING))


# --- quorum by risk ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_low_risk_short_envelope_is_approved_by_the_named_rule(instance):
    envelope = make_envelope(instance, **LOW)
    assert (envelope.state, envelope.risk, envelope.required_approvals) == (State.APPROVED, "low", 0)
    assert envelope.auto_approved_by == "low-risk-short-task"
    assert envelope.policy_version == active_policy().version
    [approved] = events(envelope, "envelope.approved")
    assert (approved.actor_type, approved.actor, approved.actor_user) == ("policy", "low-risk-short-task", None)
    assert approved.before == {"state": "pending"} and approved.after["state"] == "approved"
    assert not envelope.approvals.exists()


@pytest.mark.django_db
def test_a_medium_envelope_waits_for_one_admin(instance, admin):
    envelope = make_envelope(instance, **MEDIUM)
    assert (envelope.state, envelope.risk, envelope.required_approvals, envelope.auto_approved_by) == (
        State.PENDING,
        "medium",
        1,
        "",
    )
    services.approve_envelope(envelope=envelope, actor=admin, comment="fine")
    envelope.refresh_from_db()
    assert envelope.state == State.APPROVED
    assert [e.actor for e in events(envelope, "envelope.approved")] == ["ada"]


@pytest.mark.django_db
def test_a_high_envelope_waits_for_two_different_admins(instance, admin, second_admin):
    envelope = make_envelope(instance, **HIGH)
    assert (envelope.state, envelope.risk, envelope.required_approvals) == (State.PENDING, "high", 2)
    services.approve_envelope(envelope=envelope, actor=admin, comment="ok")
    envelope.refresh_from_db()
    assert envelope.state == State.PENDING
    services.approve_envelope(envelope=envelope, actor=second_admin, comment="ok too")
    envelope.refresh_from_db()
    assert envelope.state == State.APPROVED
    assert [a.by for a in envelope.approvals.all()] == [admin, second_admin]
    recorded = events(envelope, "envelope.approval_recorded")
    assert [(e.before["approvals"], e.after["approvals"], e.after["required"]) for e in recorded] == [
        (0, 1, 2),
        (1, 2, 2),
    ]
    assert verify_chain().ok


@pytest.mark.django_db
def test_a_low_risk_envelope_that_no_rule_covers_waits_for_one_admin(instance):
    envelope = make_envelope(instance, **{**LOW, "duration_seconds": 3600})
    assert (envelope.state, envelope.risk, envelope.required_approvals, envelope.auto_approved_by) == (
        State.PENDING,
        "low",
        1,
        "",
    )


@pytest.mark.django_db
def test_without_the_named_rule_nothing_is_auto_approved(policy_dir, instance):
    policy_dir.write("auto_approve.toml", "# no rules: people approve everything\n")
    envelope = make_envelope(instance, **LOW)
    assert (envelope.state, envelope.required_approvals) == (State.PENDING, 1)
    assert not events(envelope, "envelope.approved")


@pytest.mark.django_db
def test_a_renamed_rule_is_recorded_under_its_new_name(policy_dir, instance):
    policy_dir.replace("auto_approve.toml", 'name = "low-risk-short-task"', 'name = "tiny-read-only-task"')
    envelope = make_envelope(instance, **LOW)
    assert envelope.auto_approved_by == "tiny-read-only-task"
    assert events(envelope, "envelope.approved")[0].actor == "tiny-read-only-task"


@pytest.mark.django_db
def test_a_request_longer_than_its_risk_allows_names_the_field(instance):
    with pytest.raises(ValidationFailed) as refused:
        make_envelope(instance, **{**HIGH, "duration_seconds": 3601})
    assert refused.value.field == "duration_seconds" and "high-risk" in refused.value.message


@pytest.mark.django_db
def test_the_request_is_audited_with_its_risk_reasons_and_version(instance):
    envelope = make_envelope(instance, **HIGH)
    [requested] = events(envelope, "envelope.requested")
    assert requested.before is None
    assert requested.after["risk"] == "high" and requested.after["required_approvals"] == 2
    assert requested.after["policy_version"] == active_policy().version
    assert requested.after["risk_reasons"] == ["secrets:read is high risk"]
    assert requested.after["auto_approve_rule"] is None


# --- separation of duties ------------------------------------------------------------------------


@pytest.mark.django_db
def test_nobody_approves_an_envelope_they_requested(instance, admin):
    envelope = make_envelope(instance, actor=admin, **MEDIUM)
    with pytest.raises(PermissionDenied, match="they requested"):
        services.approve_envelope(envelope=envelope, actor=admin)


@pytest.mark.django_db
def test_an_owner_never_approves_a_high_risk_envelope_for_their_own_agent(owner, admin, second_admin):
    owner.groups.add(Group.objects.get(name=IDENTITY_ADMIN))  # an owner who is also an admin
    instance = make_instance(make_agent(owner, ceiling=CEILING))
    envelope = make_envelope(instance, actor=second_admin, **HIGH)
    with pytest.raises(PermissionDenied, match="owner never approves a high-risk"):
        services.approve_envelope(envelope=envelope, actor=owner)
    assert not envelope.approvals.exists()


@pytest.mark.django_db
def test_an_owner_who_is_an_admin_may_approve_medium_risk_for_their_agent(owner, second_admin):
    owner.groups.add(Group.objects.get_or_create(name=IDENTITY_ADMIN)[0])
    instance = make_instance(make_agent(owner, ceiling=CEILING))
    envelope = make_envelope(instance, actor=second_admin, **MEDIUM)
    services.approve_envelope(envelope=envelope, actor=owner)
    envelope.refresh_from_db()
    assert envelope.state == State.APPROVED


@pytest.mark.django_db
def test_one_admin_counts_once(instance, admin):
    envelope = make_envelope(instance, **HIGH)
    services.approve_envelope(envelope=envelope, actor=admin)
    with pytest.raises(PermissionDenied, match="one admin counts once"):
        services.approve_envelope(envelope=envelope, actor=admin)
    envelope.refresh_from_db()
    assert envelope.state == State.PENDING and envelope.approvals.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["owner", "auditor", "gateway"])
def test_only_identity_admins_approve_or_deny(request, instance, who):
    envelope = make_envelope(instance, **MEDIUM)
    user = request.getfixturevalue(who)
    with pytest.raises(PermissionDenied):
        services.approve_envelope(envelope=envelope, actor=user)
    with pytest.raises(PermissionDenied):
        services.deny_envelope(envelope=envelope, actor=user, comment="no")


@pytest.mark.django_db
def test_the_api_answers_a_refusal_with_403(instance, admin):
    from core.api import exception_handler

    envelope = make_envelope(instance, actor=admin, **MEDIUM)
    with pytest.raises(PermissionDenied) as refused:
        services.approve_envelope(envelope=envelope, actor=admin)
    assert exception_handler(refused.value, {}).status_code == 403


@pytest.mark.django_db
def test_only_pending_envelopes_are_approved(instance, admin, second_admin):
    envelope = make_envelope(instance, **MEDIUM)
    services.approve_envelope(envelope=envelope, actor=admin)
    with pytest.raises(InvalidTransition):
        services.approve_envelope(envelope=envelope, actor=second_admin)


# --- deny, re-task -------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("comment", ["", "   ", None])
def test_deny_needs_a_comment(instance, admin, comment):
    envelope = make_envelope(instance, **MEDIUM)
    with pytest.raises(ValidationFailed) as refused:
        services.deny_envelope(envelope=envelope, actor=admin, comment=comment)
    assert refused.value.field == "comment"
    envelope.refresh_from_db()
    assert envelope.state == State.PENDING


@pytest.mark.django_db
def test_a_denial_is_recorded_with_its_reason(instance, admin):
    envelope = make_envelope(instance, **HIGH)
    services.deny_envelope(envelope=envelope, actor=admin, comment="no production secrets this week")
    envelope.refresh_from_db()
    assert (envelope.state, envelope.end_reason) == (State.DENIED, "no production secrets this week")
    [denied] = events(envelope, "envelope.denied")
    assert (denied.before, denied.after, denied.reason) == (
        {"state": "pending"},
        {"state": "denied"},
        "no production secrets this week",
    )
    assert envelope.approvals.get().decision == Approval.Decision.DENY


@pytest.mark.django_db
def test_retask_creates_a_pending_envelope_classified_afresh(instance, owner, admin, policy_dir):
    old = make_envelope(instance, **MEDIUM)
    services.approve_envelope(envelope=old, actor=admin)
    policy_dir.replace("lifecycle.toml", "# Time limits", "# Time limits, revised")
    new = lifecycle.retask_envelope(
        envelope=old,
        actor=owner,
        intent="now rotate the deploy key",
        scopes=["secrets:read"],
        resources=["vault:ci/deploy-key"],
        duration_seconds=1200,
        max_actions=10,
    )
    old.refresh_from_db()
    assert old.state == State.SUPERSEDED and new.supersedes == old
    assert (new.state, new.risk, new.required_approvals) == (State.PENDING, "high", 2)
    assert new.policy_version == active_policy().version != old.policy_version


@pytest.mark.django_db
def test_a_low_risk_retask_still_waits_for_a_person(instance, owner, admin):
    old = make_envelope(instance, **MEDIUM)
    services.approve_envelope(envelope=old, actor=admin)
    new = lifecycle.retask_envelope(
        envelope=old,
        actor=owner,
        intent="just read",
        scopes=list(LOW["scopes"]),
        resources=list(LOW["resources"]),
        duration_seconds=900,
        max_actions=100,
    )
    assert (new.state, new.risk, new.required_approvals, new.auto_approved_by) == (State.PENDING, "low", 1, "")


# --- pending expiry ------------------------------------------------------------------------------


def _age(envelope, seconds):
    TaskEnvelope.objects.filter(pk=envelope.pk).update(created_at=timezone.now() - timedelta(seconds=seconds))
    envelope.refresh_from_db()


@pytest.mark.django_db
def test_pending_requests_past_the_limit_expire_and_only_those(instance, admin):
    limit = active_policy().pending_max_seconds
    stale, fresh, decided = (make_envelope(instance, **MEDIUM) for _ in range(3))
    services.approve_envelope(envelope=decided, actor=admin)
    _age(stale, limit + 1)
    _age(fresh, limit - 60)
    _age(decided, limit + 1)
    assert lifecycle.expire_pending_requests() == 1
    assert lifecycle.expire_pending_requests() == 0  # safe to run twice
    for envelope, state in ((stale, State.EXPIRED), (fresh, State.PENDING), (decided, State.APPROVED)):
        envelope.refresh_from_db()
        assert envelope.state == state
    [expired] = events(stale, "envelope.expired")
    assert (expired.actor_type, expired.actor) == ("scheduler", "expire-pending-requests")
    assert (expired.before, expired.after) == ({"state": "pending"}, {"state": "expired"})
    assert stale.end_reason == "nobody decided in time"


@pytest.mark.django_db
def test_expiry_works_in_chunks_oldest_first(instance):
    limit = active_policy().pending_max_seconds
    envelopes = [make_envelope(instance, **MEDIUM) for _ in range(3)]
    for age, envelope in zip((3, 1, 2), envelopes, strict=True):
        _age(envelope, limit + age * 60)
    assert lifecycle.expire_pending_requests(limit=2) == 2
    remaining = TaskEnvelope.objects.get(state=State.PENDING)
    assert remaining == envelopes[1]
    assert lifecycle.expire_pending_requests(limit=2) == 1


@pytest.mark.django_db
def test_the_limit_comes_from_the_policy(policy_dir, instance):
    envelope = make_envelope(instance, **MEDIUM)
    _age(envelope, 3 * 3600)
    assert lifecycle.expire_pending_requests() == 0
    policy_dir.replace("lifecycle.toml", 'expire_after = "24h"', 'expire_after = "2h"')
    assert lifecycle.expire_pending_requests() == 1


@pytest.mark.django_db
def test_a_request_past_the_limit_cannot_be_approved_before_the_sweep_runs(instance, admin):
    envelope = make_envelope(instance, **MEDIUM)
    _age(envelope, active_policy().pending_max_seconds + 1)
    with pytest.raises(InvalidTransition, match="waited longer"):
        services.approve_envelope(envelope=envelope, actor=admin)


@pytest.mark.django_db
def test_one_failing_row_does_not_stop_the_expiry_sweep(instance, monkeypatch):
    limit = active_policy().pending_max_seconds
    first, second = make_envelope(instance, **MEDIUM), make_envelope(instance, **MEDIUM)
    _age(first, limit + 120)
    _age(second, limit + 60)
    real = lifecycle.expire_envelope

    def flaky(*, envelope_id, **kwargs):
        if envelope_id == first.id:
            raise RuntimeError("boom")
        return real(envelope_id=envelope_id, **kwargs)

    monkeypatch.setattr(lifecycle, "expire_envelope", flaky)
    assert lifecycle.expire_pending_requests() == 1
    second.refresh_from_db()
    assert second.state == State.EXPIRED


# --- the inbox -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_inbox_counts_what_this_admin_could_approve_now(
    owner, admin, second_admin, django_user_model, django_assert_max_num_queries
):
    owner.groups.add(Group.objects.get(name=IDENTITY_ADMIN))
    instance = make_instance(make_agent(owner, ceiling=CEILING))
    make_envelope(instance, **MEDIUM)  # requested by owner: admin and second_admin could approve
    high = make_envelope(instance, actor=second_admin, **HIGH)  # owner may not, second_admin requested it
    already = make_envelope(instance, **HIGH)
    services.approve_envelope(envelope=already, actor=admin)  # admin decided; second_admin still could
    old = make_envelope(instance, **MEDIUM)
    _age(old, active_policy().pending_max_seconds + 1)  # waited too long: nobody's work any more
    make_envelope(instance, **LOW)  # auto-approved
    assert pending_inbox_count(admin) == 2  # medium, high
    assert pending_inbox_count(second_admin) == 2  # medium, already
    assert pending_inbox_count(owner) == 0  # requested medium and already; high is their own agent's
    assert pending_inbox_count(make_admin(django_user_model, "newcomer")) == 3
    quiet = make_admin(django_user_model, "quiet")
    with django_assert_max_num_queries(2):  # the role lookup and one COUNT
        assert pending_inbox_count(quiet) == 3
    assert high.state == State.PENDING


@pytest.mark.django_db
def test_the_inbox_of_a_non_admin_is_empty(instance, auditor):
    make_envelope(instance, **MEDIUM)
    assert pending_inbox_count(auditor) == 0


# --- the race, on PostgreSQL ---------------------------------------------------------------------


def race(*calls):
    """Run each call in its own thread (own connection, own transaction), all released at once."""
    barrier = threading.Barrier(len(calls))
    outcomes: list = [None] * len(calls)

    def run(index, call):
        try:
            barrier.wait(timeout=10)
            outcomes[index] = call()
        except Exception as exc:  # recorded, asserted by the test
            outcomes[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return outcomes


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_admins_approving_at_once_approve_exactly_once(owner, admin, second_admin):
    instance = make_instance(make_agent(owner, ceiling=CEILING))
    for _ in range(5):
        envelope = make_envelope(instance, **HIGH)
        outcomes = race(
            lambda e=envelope: services.approve_envelope(envelope=e, actor=admin),
            lambda e=envelope: services.approve_envelope(envelope=e, actor=second_admin),
        )
        assert all(isinstance(o, TaskEnvelope) for o in outcomes), outcomes
        envelope.refresh_from_db()
        assert envelope.state == State.APPROVED
        assert envelope.approvals.filter(decision="approve").count() == 2
        assert len(events(envelope, "envelope.approved")) == 1
        assert len(events(envelope, "envelope.approval_recorded")) == 2
    assert verify_chain().ok


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_three_admins_racing_for_a_quorum_of_two_never_overcount(owner, admin, second_admin, django_user_model):
    third = make_admin(django_user_model, "grace")
    instance = make_instance(make_agent(owner, ceiling=CEILING))
    envelope = make_envelope(instance, **HIGH)
    outcomes = race(
        *(lambda a=a: services.approve_envelope(envelope=envelope, actor=a) for a in (admin, second_admin, third))
    )
    assert sorted(type(o).__name__ for o in outcomes) == ["InvalidTransition", "TaskEnvelope", "TaskEnvelope"]
    envelope.refresh_from_db()
    assert envelope.state == State.APPROVED and envelope.approvals.count() == 2
    assert len(events(envelope, "envelope.approved")) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_same_admin_approving_twice_at_once_counts_once(owner, admin):
    instance = make_instance(make_agent(owner, ceiling=CEILING))
    envelope = make_envelope(instance, **HIGH)
    outcomes = race(
        lambda: services.approve_envelope(envelope=envelope, actor=admin),
        lambda: services.approve_envelope(envelope=envelope, actor=admin),
    )
    assert sorted(type(o).__name__ for o in outcomes) == ["PermissionDenied", "TaskEnvelope"]
    envelope.refresh_from_db()
    assert envelope.state == State.PENDING and envelope.approvals.count() == 1
    assert len(events(envelope, "envelope.approval_recorded")) == 1
    assert not events(envelope, "envelope.approved")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_expiry_sweeps_at_once_expire_each_request_once(owner):
    instance = make_instance(make_agent(owner, ceiling=CEILING))
    envelopes = [make_envelope(instance, **MEDIUM) for _ in range(6)]
    TaskEnvelope.objects.filter(pk__in=[e.pk for e in envelopes]).update(
        created_at=timezone.now() - timedelta(seconds=active_policy().pending_max_seconds + 1)
    )
    outcomes = race(lifecycle.expire_pending_requests, lifecycle.expire_pending_requests)
    assert sum(outcomes) == 6, outcomes
    assert AuditEvent.objects.filter(verb="envelope.expired").count() == 6
