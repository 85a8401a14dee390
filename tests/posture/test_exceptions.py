from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from audit.models import AuditEvent
from core.errors import InvalidTransition, PermissionDenied, ValidationFailed
from posture import standing_exceptions as svc
from posture.models import StandingException
from tests.helpers.factories import make_agent

pytestmark = pytest.mark.django_db
Status = StandingException.Status


def ask(actor, **overrides):
    fields = dict(
        vendor="Acme CRM",
        justification="vendor webhook cannot use short-lived tokens",
        scopes=["github:read"],
        compensating_controls="IP allow-list; weekly log review",
        duration_days=60,
        recertify_every_days=14,
    )
    fields.update(overrides)
    return svc.request_standing_exception(actor=actor, **fields)


def test_a_requested_secret_is_shown_once_and_only_its_digest_is_kept(owner):
    requested = ask(owner, issue_secret=True)

    exc = StandingException.objects.get()
    assert requested.secret.startswith("mdx_")
    assert exc.secret_digest == StandingException.digest_of(requested.secret)
    assert requested.secret not in str(AuditEvent.objects.get(verb="exception.requested").after)
    assert svc.secret_is_valid(requested.secret) is None  # not before approval


def test_approval_sets_the_hard_expiry_and_the_secret_becomes_valid(owner, admin):
    requested = ask(owner, issue_secret=True)

    exc = svc.approve_standing_exception(standing_exception=requested.standing_exception, actor=admin)

    assert exc.status == Status.APPROVED
    assert exc.expires_at - exc.approved_at == timedelta(days=60)
    assert exc.recertify_by == (exc.approved_at + timedelta(days=14)).date()
    assert svc.secret_is_valid(requested.secret) == exc
    assert svc.secret_is_valid("mdx_wrong") is None


def test_nobody_approves_their_own_request_and_owners_cannot_approve(owner, admin):
    mine = ask(admin, owner=owner).standing_exception
    with pytest.raises(PermissionDenied):
        svc.approve_standing_exception(standing_exception=mine, actor=admin)
    with pytest.raises(PermissionDenied):
        svc.approve_standing_exception(standing_exception=ask(owner).standing_exception, actor=owner)


def test_expiry_longer_than_ninety_days_is_refused(owner):
    with pytest.raises(ValidationFailed) as err:
        ask(owner, duration_days=91)
    assert err.value.field == "duration_days"


def test_scopes_outside_the_agents_ceiling_are_refused(owner):
    agent = make_agent(owner)
    with pytest.raises(ValidationFailed) as err:
        ask(owner, agent=agent, scopes=["slack:admin"])
    assert err.value.field == "scopes"


def test_an_owner_cannot_ask_for_someone_elses_agent(owner, other_owner):
    theirs = make_agent(other_owner, slug="theirs")
    with pytest.raises(PermissionDenied):
        ask(owner, agent=theirs)


def test_the_sweep_expires_due_exceptions_and_their_secret_stops_working(owner, admin):
    requested = ask(owner, issue_secret=True)
    exc = svc.approve_standing_exception(standing_exception=requested.standing_exception, actor=admin)
    later = exc.expires_at + timedelta(seconds=1)

    assert svc.expire_due_standing_exceptions(now=exc.expires_at - timedelta(seconds=1)) == 0
    assert svc.expire_due_standing_exceptions(now=later) == 1
    assert svc.expire_due_standing_exceptions(now=later) == 0  # idempotent

    exc.refresh_from_db()
    assert exc.status == Status.EXPIRED and exc.ended_at is not None
    assert svc.secret_is_valid(requested.secret, now=exc.approved_at + timedelta(days=1)) is None
    event = AuditEvent.objects.get(verb="exception.expired")
    assert event.actor_type == "scheduler" and event.after == {"status": "expired"}


def test_recertification_moves_the_date_but_never_the_expiry(owner, admin):
    exc = svc.approve_standing_exception(standing_exception=ask(owner).standing_exception, actor=admin)
    expires = exc.expires_at
    later = timezone.now() + timedelta(days=50)

    exc = svc.recertify_standing_exception(standing_exception=exc, actor=owner, comment="still needed", now=later)

    assert exc.recertify_by == expires.date()  # capped at the hard expiry
    assert exc.expires_at == expires
    assert AuditEvent.objects.filter(verb="exception.recertified").count() == 1


def test_recertification_needs_a_comment_and_an_approved_exception(owner, admin):
    pending = ask(owner).standing_exception
    with pytest.raises(InvalidTransition):
        svc.recertify_standing_exception(standing_exception=pending, actor=owner, comment="ok")
    exc = svc.approve_standing_exception(standing_exception=pending, actor=admin)
    with pytest.raises(ValidationFailed):
        svc.recertify_standing_exception(standing_exception=exc, actor=owner, comment="  ")


def test_reminders_go_out_once_a_day_for_due_recertifications(owner, admin):
    exc = svc.approve_standing_exception(standing_exception=ask(owner).standing_exception, actor=admin)
    not_yet = timezone.now()
    due = timezone.now() + timedelta(days=10)

    assert svc.remind_recertifications(now=not_yet) == 0
    assert svc.remind_recertifications(now=due) == 1
    assert svc.remind_recertifications(now=due) == 0  # once per day

    [message] = mail.outbox
    assert "Acme CRM" in message.subject and owner.email in message.to and admin.email in message.to
    svc.recertify_standing_exception(standing_exception=exc, actor=owner, comment="still needed", now=due)
    assert svc.remind_recertifications(now=due) == 0


def test_renewal_is_a_new_request_that_retires_the_old_one_when_approved(owner, admin):
    old_request = ask(owner, issue_secret=True)
    old = svc.approve_standing_exception(standing_exception=old_request.standing_exception, actor=admin)

    renewal = svc.renew_standing_exception(standing_exception=old, actor=owner, duration_days=30)
    assert renewal.standing_exception.status == Status.PENDING and renewal.standing_exception.renews_id == old.id
    assert renewal.secret and renewal.secret != old_request.secret
    with pytest.raises(InvalidTransition):
        svc.renew_standing_exception(standing_exception=old, actor=owner)

    svc.approve_standing_exception(standing_exception=renewal.standing_exception, actor=admin)

    old.refresh_from_db()
    assert old.status == Status.RETIRED and "renewed" in old.end_reason
    assert svc.secret_is_valid(old_request.secret) is None
    assert svc.secret_is_valid(renewal.secret).id == renewal.standing_exception.id


def test_retire_ends_it_and_is_idempotent_but_only_for_owner_or_admin(owner, other_owner, admin):
    exc = svc.approve_standing_exception(standing_exception=ask(owner).standing_exception, actor=admin)
    with pytest.raises(PermissionDenied):
        svc.retire_standing_exception(standing_exception=exc, actor=other_owner)

    svc.retire_standing_exception(standing_exception=exc, actor=owner, reason="vendor offboarded")
    svc.retire_standing_exception(standing_exception=exc, actor=owner)

    exc.refresh_from_db()
    assert exc.status == Status.RETIRED
    assert AuditEvent.objects.filter(verb="exception.retired").count() == 1
    with pytest.raises(InvalidTransition):
        svc.approve_standing_exception(standing_exception=exc, actor=admin)


def test_exceptions_are_scoped_to_their_owner(owner, other_owner, auditor):
    ask(owner)
    assert svc.standing_exceptions_for(owner).count() == 1
    assert svc.standing_exceptions_for(other_owner).count() == 0
    assert svc.standing_exceptions_for(auditor).count() == 1
