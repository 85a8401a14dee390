"""/api/v1/tokens/: a person's own API tokens, shown once, stored as a hash, revocable."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import ApiToken
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_a_new_token_is_shown_once_and_only_its_hash_is_kept(api_client, owner):
    client = api_client.as_user(owner)
    response = client.post("/api/v1/tokens/", {"name": "ci", "expires_days": 30}, format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    secret = data["token"]
    assert secret.startswith("mdt_") and data["prefix"] == secret[:8] and data["status"] == "active"
    assert response["Cache-Control"] == "no-store"
    stored = ApiToken.objects.get(pk=data["id"])
    assert stored.digest == ApiToken.digest_of(secret) and secret not in str(stored.__dict__)
    assert timedelta(days=29) < stored.expires_at - timezone.now() <= timedelta(days=30)
    listed = client.get("/api/v1/tokens/").json()["results"]
    assert all("token" not in t for t in listed) and data["id"] in {t["id"] for t in listed}


def test_the_new_token_authenticates_as_its_owner(api_client, owner):
    secret = api_client.as_user(owner).post("/api/v1/tokens/", {"name": "ci"}, format="json").json()["token"]
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert api_client.get("/api/v1/agents/").status_code == 200


def test_a_revoked_token_stops_working_at_once(api_client, owner):
    client = api_client.as_user(owner)
    created = client.post("/api/v1/tokens/", {"name": "ci"}, format="json").json()
    response = client.post(f"/api/v1/tokens/{created['id']}/revoke")
    assert response.status_code == 200 and response.json()["status"] == "revoked"
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {created['token']}")
    assert api_client.get("/api/v1/agents/").status_code == 401


def test_revoking_twice_is_harmless_and_audited_once(api_client, owner):
    client = api_client.as_user(owner)
    created = client.post("/api/v1/tokens/", {}, format="json").json()
    for _ in range(2):
        assert client.post(f"/api/v1/tokens/{created['id']}/revoke").status_code == 200
    assert AuditEvent.objects.filter(verb="token.revoked").count() == 1


def test_an_expired_token_is_refused(api_client, owner):
    created = api_client.as_user(owner).post("/api/v1/tokens/", {}, format="json").json()
    ApiToken.objects.filter(pk=created["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {created['token']}")
    assert api_client.get("/api/v1/agents/").status_code == 401


def test_nobody_lists_or_revokes_someone_elses_tokens(api_client, owner, admin):
    theirs = api_client.as_user(owner).post("/api/v1/tokens/", {"name": "mine"}, format="json").json()
    client = api_client.as_user(admin)
    assert theirs["id"] not in {t["id"] for t in client.get("/api/v1/tokens/").json()["results"]}
    assert client.post(f"/api/v1/tokens/{theirs['id']}/revoke").status_code == 404
    assert ApiToken.objects.get(pk=theirs["id"]).revoked_at is None


@pytest.mark.parametrize("role", ["owner", "admin", "auditor", "gateway"])
def test_every_role_manages_its_own_tokens(request, api_client, role):
    client = api_client.as_user(request.getfixturevalue(role))
    assert client.post("/api/v1/tokens/", {"name": "x"}, format="json").status_code == 201
    assert client.get("/api/v1/tokens/").status_code == 200


def test_strangers_get_401(api_client):
    assert api_client.get("/api/v1/tokens/").status_code == 401
    assert api_client.post("/api/v1/tokens/", {}, format="json").status_code == 401


def test_creating_and_revoking_are_audit_events_without_the_secret(api_client, owner):
    client = api_client.as_user(owner)
    created = client.post("/api/v1/tokens/", {"name": "deploy"}, format="json").json()
    client.post(f"/api/v1/tokens/{created['id']}/revoke")
    events = AuditEvent.objects.filter(verb__startswith="token.").order_by("id")
    assert [e.verb for e in events] == ["token.created", "token.revoked"]
    assert all(e.actor == "olivia" and e.target_id == created["id"] for e in events)
    assert created["token"] not in str([(e.before, e.after, e.reason, e.target_label) for e in events])


@pytest.mark.parametrize(
    ("field", "body"),
    [
        ("expires_days", {"expires_days": 0}),
        ("expires_days", {"expires_days": -5}),
        ("expires_days", {"expires_days": "30"}),
        ("expires_days", {"expires_days": 100000}),
        ("name", {"name": "n" * 101}),
        ("name", {"name": 5}),
        ("user", {"user": "ada"}),
    ],
)
def test_bad_input_is_400_naming_the_field(api_client, owner, field, body):
    client = api_client.as_user(owner)
    before = ApiToken.objects.count()
    response = client.post("/api/v1/tokens/", body, format="json")
    assert response.status_code == 400 and field in response.json()
    assert ApiToken.objects.count() == before


def test_the_list_query_count_does_not_grow_with_rows(api_client, owner, django_assert_max_num_queries):
    client = api_client.as_user(owner)
    for n in range(15):
        client.post("/api/v1/tokens/", {"name": f"t{n}"}, format="json")
    with django_assert_max_num_queries(4):
        assert len(client.get("/api/v1/tokens/").json()["results"]) == 16
