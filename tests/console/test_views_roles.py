"""People and roles: admins set roles; identity-admin waits for a second admin; the last admin and
roles managed by single sign-on cannot be changed here."""

import pytest
from django.test import Client

from accounts.models import AdminGrant, ExternalAccount
from accounts.roles import AGENT_OWNER, AUDITOR, IDENTITY_ADMIN, roles_of
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def _roles(user):
    user.refresh_from_db()
    user.__dict__.pop("_mandate_roles", None)
    return set(roles_of(user))


def test_an_admin_sets_roles_and_the_change_is_audited(signed_in, admin, owner):
    client = signed_in(admin)
    response = client.post(f"/people/{owner.pk}/roles", {"roles": [AGENT_OWNER, AUDITOR]}, follow=True)
    assert f"Roles of {owner.username} saved." in response.content.decode()
    assert _roles(owner) == {AGENT_OWNER, AUDITOR}
    event = AuditEvent.objects.filter(verb="user.roles_changed").latest("id")
    assert event.after == {"roles": [AGENT_OWNER, AUDITOR]}


def test_making_someone_an_identity_admin_waits_for_a_second_admin(signed_in, admin, second_admin, owner):
    signed_in(admin).post(f"/people/{owner.pk}/roles", {"roles": [AGENT_OWNER, IDENTITY_ADMIN]})
    assert IDENTITY_ADMIN not in _roles(owner)
    grant = AdminGrant.objects.get(user=owner, state="pending")
    # The admin who asked cannot approve; the page says so before the click.
    page = signed_in(admin).get(f"/people/{owner.pk}/").content.decode()
    assert "Cannot approve: another identity admin than the one who asked must approve" in page
    signed_in(admin).post(f"/people/{owner.pk}/admin-grant", {"decision": "approve"})
    assert IDENTITY_ADMIN not in _roles(owner)
    signed_in(second_admin).post(f"/people/{owner.pk}/admin-grant", {"decision": "approve"})
    assert IDENTITY_ADMIN in _roles(owner)
    grant.refresh_from_db()
    assert grant.state == "approved" and grant.decided_by == second_admin
    assert AuditEvent.objects.filter(verb="user.admin_approved").exists()


def test_the_last_identity_admin_keeps_the_role(signed_in, admin):
    response = signed_in(admin).post(f"/people/{admin.pk}/roles", {"roles": [AUDITOR]}, follow=True)
    assert "the last active identity admin keeps the role" in response.content.decode()
    assert IDENTITY_ADMIN in _roles(admin)


def test_roles_managed_by_single_sign_on_are_read_only(signed_in, admin, owner):
    ExternalAccount.objects.create(user=owner, issuer="https://idp.example", subject="s-9")
    page = signed_in(admin).get(f"/people/{owner.pk}/").content.decode()
    assert "shown here read only" in page and f"/people/{owner.pk}/roles" not in page
    signed_in(admin).post(f"/people/{owner.pk}/roles", {"roles": [AUDITOR]})
    assert _roles(owner) == {AGENT_OWNER}


def test_only_admins_with_csrf_change_roles(signed_in, owner, auditor, admin):
    assert signed_in(owner).post(f"/people/{auditor.pk}/roles", {"roles": [AGENT_OWNER]}).status_code == 403
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin)
    assert strict.post(f"/people/{auditor.pk}/roles", {"roles": [AGENT_OWNER]}).status_code == 403
    assert _roles(auditor) == {AUDITOR}
