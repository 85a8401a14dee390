"""The people pages: identity admins see how everyone signs in and what they hold open, and can end
someone's sessions, revoke their tokens or deactivate them — all on the audit record."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.models import ApiToken, ExternalAccount, SignInSession
from accounts.services import create_api_token
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def _session_for(user, method="password"):
    client = Client()
    client.force_login(user)
    SignInSession.objects.create(user=user, session_key=client.session.session_key, method=method)
    return client


def test_only_identity_admins_see_people(signed_in, owner, auditor, admin):
    assert signed_in(owner).get("/people/").status_code == 403
    assert signed_in(auditor).get("/people/").status_code == 403
    assert signed_in(admin).get("/people/").status_code == 200
    assert signed_in(owner).post(f"/people/{admin.pk}/sign-out").status_code == 403
    assert signed_in(owner).post(f"/people/{admin.pk}/deactivate", {"reason": "x"}).status_code == 403


def test_the_list_shows_source_sessions_and_tokens_in_a_pinned_number_of_queries(
    signed_in, admin, owner, other_owner, django_user_model
):
    _session_for(owner)
    _session_for(owner)
    create_api_token(user=owner, actor=owner, name="ci")
    ExternalAccount.objects.create(user=other_owner, issuer="https://idp.example", subject="s-1")
    client = signed_in(admin)
    client.get("/people/")
    with CaptureQueriesContext(connection) as few:
        page = client.get("/people/").content.decode()
    for n in range(5):
        django_user_model.objects.create_user(f"extra-{n}")
    with CaptureQueriesContext(connection) as more:
        client.get("/people/")
    assert len(few) == len(more)
    row = page[page.index(f'id="person-{owner.pk}"') :]
    row = row[: row.index("</tr>")]
    assert "password" in row and '<td class="num">2</td>' in row and '<td class="num">1</td>' in row
    other = page[page.index(f'id="person-{other_owner.pk}"') :]
    assert "single sign-on" in other[: other.index("</tr>")]


def test_sign_out_everywhere_ends_every_session_of_that_person_and_is_audited(signed_in, admin, owner):
    first, second = _session_for(owner), _session_for(owner)
    response = signed_in(admin).post(f"/people/{owner.pk}/sign-out")
    assert response.status_code == 302
    assert first.get("/").status_code == 302 and second.get("/").status_code == 302
    assert not SignInSession.objects.filter(user=owner).exists()
    event = AuditEvent.objects.get(verb="user.sessions_ended")
    assert event.after == {"sessions": 2} and event.actor_user_id == admin.pk


def test_deactivating_revokes_tokens_for_good_and_needs_a_reason(signed_in, admin, owner):
    issued = create_api_token(user=owner, actor=owner, name="ci")
    client = signed_in(admin)
    client.post(f"/people/{owner.pk}/deactivate", {"reason": ""})
    owner.refresh_from_db()
    assert owner.is_active
    client.post(f"/people/{owner.pk}/deactivate", {"reason": "left the company"})
    owner.refresh_from_db()
    assert not owner.is_active
    assert ApiToken.objects.get(pk=issued.token.pk).revoked_at is not None
    owner.is_active = True  # reactivated later: the token stays revoked
    owner.save()
    assert not ApiToken.objects.get(pk=issued.token.pk).is_usable
    assert AuditEvent.objects.filter(verb="user.deactivated", reason="left the company").exists()


def test_nobody_deactivates_themselves_but_one_admin_may_deactivate_another(signed_in, admin, second_admin):
    signed_in(admin).post(f"/people/{admin.pk}/deactivate", {"reason": "oops"})
    admin.refresh_from_db()
    assert admin.is_active
    signed_in(admin).post(f"/people/{second_admin.pk}/deactivate", {"reason": "rotation"})
    second_admin.refresh_from_db()
    assert not second_admin.is_active


def test_an_admin_revokes_someone_elses_token_from_their_page(signed_in, admin, owner):
    issued = create_api_token(user=owner, actor=owner, name="ci")
    page = signed_in(admin).get(f"/people/{owner.pk}/").content.decode()
    assert f"Revoke token ci of {owner.get_username()}" in page
    signed_in(admin).post(f"/people/{owner.pk}/tokens/{issued.token.pk}/revoke")
    assert ApiToken.objects.get(pk=issued.token.pk).revoked_at is not None
    assert AuditEvent.objects.get(verb="token.revoked").actor_user_id == admin.pk


def test_another_persons_token_cannot_be_revoked_through_the_wrong_page(signed_in, admin, owner, other_owner):
    issued = create_api_token(user=owner, actor=owner, name="ci")
    response = signed_in(admin).post(f"/people/{other_owner.pk}/tokens/{issued.token.pk}/revoke")
    assert response.status_code == 404
    assert ApiToken.objects.get(pk=issued.token.pk).revoked_at is None
