import pytest
from django.test import Client

from accounts import services
from accounts.models import ApiToken
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_creating_a_token_shows_its_secret_once_and_keeps_only_a_digest(signed_in, owner):
    client = signed_in(owner)
    page = client.post("/tokens/", {"name": "ci", "expires_days": "30"}, follow=True).content.decode()
    token = ApiToken.objects.get()
    secret = page.split('id="new-secret" class="mono" value="')[1].split('"')[0]
    assert secret.startswith("mdt_") and token.digest == ApiToken.digest_of(secret)
    assert "data-copy" in page and "will not be shown again" in page
    assert secret not in client.get("/tokens/").content.decode()
    assert token.expires_at is not None
    event = AuditEvent.objects.get(verb="token.created")
    assert secret not in str(event.after)


def test_a_token_name_and_expiry_are_validated(signed_in, owner):
    client = signed_in(owner)
    response = client.post("/tokens/", {"name": "x" * 101, "expires_days": "30"})
    assert response.status_code == 400 and "<strong>Name</strong>" in response.content.decode()
    response = client.post("/tokens/", {"name": "x", "expires_days": "soon"})
    assert response.status_code == 400 and "<strong>Expires after</strong>" in response.content.decode()
    assert "expires_days</strong>" not in response.content.decode()
    assert client.post("/tokens/", {"name": "x", "expires_days": "0"}).status_code == 400
    assert not ApiToken.objects.exists()


def test_creating_a_token_redirects_so_a_reload_never_creates_a_second(signed_in, owner):
    client = signed_in(owner)
    response = client.post("/tokens/", {"name": "ci", "expires_days": "30"})
    assert response.status_code == 302 and response["Location"] == "/tokens/"
    shown = client.get("/tokens/")
    assert 'id="new-secret"' in shown.content.decode() and shown["Cache-Control"] == "no-store"
    reload = client.get("/tokens/").content.decode()  # the browser's reload is a GET now
    assert 'id="new-secret"' not in reload
    assert ApiToken.objects.count() == 1
    other = signed_in(owner)  # the secret lives in the creating session only
    assert 'id="new-secret"' not in other.get("/tokens/").content.decode()


def test_a_token_without_expiry(signed_in, owner):
    signed_in(owner).post("/tokens/", {"name": "forever", "expires_days": ""})
    assert ApiToken.objects.get().expires_at is None


def test_revoking_a_token(signed_in, owner):
    token = services.create_api_token(user=owner, actor=owner, name="ci").token
    response = signed_in(owner).post(f"/tokens/{token.id}/revoke", follow=True)
    assert "Token ci revoked" in response.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is not None and token.status == "revoked"
    assert AuditEvent.objects.filter(verb="token.revoked").count() == 1
    signed_in(owner).post(f"/tokens/{token.id}/revoke")
    assert AuditEvent.objects.filter(verb="token.revoked").count() == 1  # twice changes nothing


def test_someone_elses_token_is_neither_listed_nor_revocable(signed_in, owner, other_owner):
    token = services.create_api_token(user=owner, actor=owner, name="olivias-token").token
    client = signed_in(other_owner)
    assert "olivias-token" not in client.get("/tokens/").content.decode()
    assert client.post(f"/tokens/{token.id}/revoke").status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_token_forms_are_csrf_protected(owner):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    assert client.post("/tokens/", {"name": "ci"}).status_code == 403


def test_any_signed_in_user_may_hold_tokens_even_a_gateway(signed_in, gateway):
    assert signed_in(gateway).get("/tokens/").status_code == 200


def test_the_token_list_query_count_is_pinned(signed_in, owner, django_assert_max_num_queries):
    for i in range(10):
        services.create_api_token(user=owner, actor=owner, name=f"t{i}")
    client = signed_in(owner)
    with django_assert_max_num_queries(5):
        assert client.get("/tokens/").status_code == 200


def test_the_secret_waiting_to_be_shown_is_stored_encrypted_and_only_briefly(signed_in, owner, monkeypatch):
    import re

    from django.contrib.sessions.models import Session

    client = signed_in(owner)
    client.post("/tokens/", {"name": "ci"})
    stored = "".join(Session.objects.values_list("session_data", flat=True))
    decoded = "".join(s.get_decoded().__repr__() for s in Session.objects.all())
    assert "mdt_" not in stored and "mdt_" not in decoded  # a digest in the table, a sealed secret in the session
    shown = client.get("/tokens/").content.decode()
    assert re.search(r"mdt_[A-Za-z0-9_-]{20,}", shown)

    client.post("/tokens/", {"name": "later"})
    from console.views import tokens as views

    monkeypatch.setattr(views, "SECRET_SHOWN_WITHIN_SECONDS", -1)  # the page came too late: nothing shown
    late = client.get("/tokens/").content.decode()
    assert 'id="new-secret"' not in late and not re.search(r"mdt_[A-Za-z0-9_-]{20,}", late)
