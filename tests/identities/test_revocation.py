"""Revocation: /oauth/revoke (RFC 7009), the credentials API, and the cascades — after each one a
gateway's introspection says inactive at once."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from django.utils import timezone

from audit.models import AuditEvent
from identities.models import Credential
from tasks import lifecycle
from tasks.models import TaskEnvelope
from tests.helpers.factories import make_agent, make_envelope, make_instance
from tests.helpers.oauth import approve, form_post

pytestmark = pytest.mark.django_db


@pytest.fixture
def is_active(api_client, gateway):
    caller = api_client.as_user(gateway)

    def _is_active(token):
        return form_post(caller, "/oauth/introspect", {"token": token}).json()["active"]

    return _is_active


def jti_of(token):
    return jwt.decode(token, options={"verify_signature": False})["jti"]


# --- /oauth/revoke -------------------------------------------------------------------------------


def test_presenting_a_token_revokes_it(client, access_token, is_active, instance):
    response = form_post(client, "/oauth/revoke", {"token": access_token})

    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    assert is_active(access_token) is False
    event = AuditEvent.objects.get(verb="credential.revoked")
    assert event.actor == instance.spiffe_id and event.target_id == jti_of(access_token)


def test_the_agents_owner_may_revoke_a_token(api_client, owner, access_token, is_active):
    response = form_post(api_client.as_user(owner), "/oauth/revoke", {"token": access_token})

    assert response.status_code == 200 and is_active(access_token) is False
    assert AuditEvent.objects.get(verb="credential.revoked").actor == owner.username


@pytest.mark.parametrize("token", ["", "nonsense", "a.b.c", "x" * 8000])
def test_revoking_an_unknown_or_malformed_token_answers_200(client, token):
    response = form_post(client, "/oauth/revoke", {"token": token})
    assert response.status_code in (200, 400)
    if token:
        assert response.status_code == 200


def test_a_forged_token_naming_a_real_jti_revokes_nothing(client, access_token, is_active):
    claims = jwt.decode(access_token, options={"verify_signature": False})
    forged = jwt.encode(
        claims,
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": jwt.get_unverified_header(access_token)["kid"], "typ": "JWT"},
    )

    assert form_post(client, "/oauth/revoke", {"token": forged}).status_code == 200
    assert is_active(access_token) is True


def test_revoking_twice_is_harmless(client, access_token):
    form_post(client, "/oauth/revoke", {"token": access_token})
    assert form_post(client, "/oauth/revoke", {"token": access_token}).status_code == 200
    assert AuditEvent.objects.filter(verb="credential.revoked").count() == 1


def test_a_bad_api_token_at_revoke_is_unauthenticated(client, access_token, is_active):
    response = form_post(client, "/oauth/revoke", {"token": access_token}, HTTP_AUTHORIZATION="Bearer mdt_wrong")
    assert response.status_code == 401 and is_active(access_token) is True


# --- /api/v1/credentials/ ------------------------------------------------------------------------


def test_an_owner_lists_their_agents_credentials_without_the_token(api_client, owner, access_token, instance, envelope):
    response = api_client.as_user(owner).get("/api/v1/credentials/")

    assert response.status_code == 200
    [row] = response.json()["results"]
    assert set(row) == {
        "jti",
        "instance",
        "envelope",
        "scopes",
        "audience",
        "issued_at",
        "expires_at",
        "status",
        "revoked_at",
        "revoke_reason",
        "kid",
        "parent_jti",
    }
    assert row["jti"] == jti_of(access_token) and row["status"] == "active"
    assert row["instance"] == str(instance.id) and row["envelope"] == str(envelope.id)
    assert access_token not in response.content.decode()


def test_another_owner_sees_none_of_them(api_client, other_owner, access_token):
    client = api_client.as_user(other_owner)
    assert client.get("/api/v1/credentials/").json()["results"] == []
    assert client.get(f"/api/v1/credentials/{jti_of(access_token)}/").status_code == 404
    assert client.post(f"/api/v1/credentials/{jti_of(access_token)}/revoke", {}, format="json").status_code == 404


def test_the_list_filters_by_status_instance_and_envelope(api_client, admin, issue, instance, envelope, access_token):
    second = issue(instance, envelope).json()["access_token"]
    Credential.objects.filter(jti=jti_of(second)).update(expires_at=timezone.now() - timedelta(seconds=1))
    client = api_client.as_user(admin)

    def jtis(query):
        response = client.get(f"/api/v1/credentials/?{query}")
        assert response.status_code == 200
        return {row["jti"] for row in response.json()["results"]}

    assert jtis("status=active") == {jti_of(access_token)}
    assert jtis("status=expired") == {jti_of(second)}
    assert jtis("status=revoked") == set()
    assert jtis(f"instance={instance.id}&envelope={envelope.id}") == {jti_of(access_token), jti_of(second)}
    assert client.get("/api/v1/credentials/?instance=nope").status_code == 400
    assert client.get("/api/v1/credentials/?status=zombie").status_code == 400


def test_the_list_is_a_fixed_number_of_queries(
    api_client, admin, issue, instance, envelope, django_assert_max_num_queries
):
    for _ in range(5):
        issue(instance, envelope)
    client = api_client.as_user(admin)
    client.get("/api/v1/credentials/")  # the token's first use records last_used_at
    with django_assert_max_num_queries(4):  # API token, roles, count, page
        assert len(client.get("/api/v1/credentials/").json()["results"]) == 5


def test_the_owner_revokes_a_credential_by_jti_with_a_reason(api_client, owner, access_token, is_active):
    response = api_client.as_user(owner).post(
        f"/api/v1/credentials/{jti_of(access_token)}/revoke", {"reason": "leaked in a log"}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["status"] == "revoked" and response.json()["revoke_reason"] == "leaked in a log"
    assert is_active(access_token) is False


def test_an_admin_may_revoke_and_an_auditor_may_not(api_client, admin, auditor, access_token, is_active):
    url = f"/api/v1/credentials/{jti_of(access_token)}/revoke"
    assert api_client.as_user(auditor).post(url, {}, format="json").status_code == 403
    assert is_active(access_token) is True
    assert api_client.as_user(admin).post(url, {}, format="json").status_code == 200
    assert is_active(access_token) is False


def test_revoking_an_expired_credential_is_a_conflict(api_client, owner, access_token):
    Credential.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = api_client.as_user(owner).post(f"/api/v1/credentials/{jti_of(access_token)}/revoke", {}, format="json")
    assert response.status_code == 409


def test_revoking_without_a_token_is_unauthenticated(client, access_token):
    assert client.post(f"/api/v1/credentials/{jti_of(access_token)}/revoke").status_code == 401
    assert client.get("/api/v1/credentials/").status_code == 401


# --- cascades: every end of authority flips introspection to inactive at once --------------------


def test_completing_the_envelope_revokes_its_credentials(access_token, is_active, envelope, owner):
    assert is_active(access_token) is True
    lifecycle.complete_envelope(envelope=envelope, actor=owner)
    assert is_active(access_token) is False


def test_the_instance_completing_its_own_envelope_revokes_its_credentials(access_token, is_active, envelope, instance):
    from audit import services as audit

    lifecycle.complete_envelope(envelope=envelope, actor=audit.Actor.of_instance(instance))
    assert is_active(access_token) is False


def test_revoking_the_envelope_revokes_its_credentials(access_token, is_active, envelope, admin):
    lifecycle.revoke_envelope(envelope=envelope, actor=admin, reason="drift")
    assert is_active(access_token) is False
    assert Credential.objects.get().revoke_reason == "envelope revoked"


def test_expiring_the_envelope_revokes_its_credentials(access_token, is_active, envelope):
    TaskEnvelope.objects.filter(pk=envelope.pk).update(expires_at=timezone.now())
    assert lifecycle.expire_envelope(envelope_id=envelope.id)
    assert is_active(access_token) is False
    assert Credential.objects.get().status == "revoked"


def test_retasking_the_envelope_revokes_its_credentials(access_token, is_active, envelope, owner):
    new = lifecycle.retask_envelope(
        envelope=envelope,
        actor=owner,
        intent="narrower",
        scopes=["github:read"],
        resources=[],
        duration_seconds=600,
        max_actions=5,
    )
    assert new.state == "pending" and is_active(access_token) is False


def test_pausing_the_instance_revokes_its_credentials(access_token, is_active, instance, owner):
    lifecycle.pause_instance(instance=instance, actor=owner)
    assert is_active(access_token) is False


def test_retiring_the_instance_revokes_its_credentials(access_token, is_active, instance, owner):
    lifecycle.retire_instance(instance=instance, actor=owner)
    assert is_active(access_token) is False


def test_pausing_the_agent_revokes_its_instances_credentials(access_token, is_active, agent, owner):
    lifecycle.pause_agent(agent=agent, actor=owner)
    assert is_active(access_token) is False


def test_retiring_the_agent_revokes_its_instances_credentials(access_token, is_active, agent, owner):
    lifecycle.retire_agent(agent=agent, actor=owner)
    assert is_active(access_token) is False


def test_a_cascade_leaves_other_envelopes_credentials_alone(
    issue, access_token, is_active, agent, envelope, admin, owner
):
    other_instance = make_instance(agent, label="other")
    other = approve(make_envelope(other_instance), admin)
    other_token = issue(other_instance, other).json()["access_token"]

    lifecycle.revoke_envelope(envelope=envelope, actor=owner)

    assert is_active(access_token) is False and is_active(other_token) is True


def test_each_revoked_credential_has_its_own_audit_event_with_a_reason(issue, instance, envelope, owner):
    for _ in range(3):
        issue(instance, envelope)
    lifecycle.revoke_envelope(envelope=envelope, actor=owner, reason="done early")
    events = AuditEvent.objects.filter(verb="credential.revoked")
    assert events.count() == 3 and {e.reason for e in events} == {"envelope revoked"}


def test_another_agents_credentials_are_untouched_by_a_pause(
    issue, access_token, is_active, agent, owner, other_owner, admin
):
    stranger = make_instance(make_agent(other_owner, slug="stranger"))
    stranger_token = issue(stranger, approve(make_envelope(stranger), admin)).json()["access_token"]
    lifecycle.pause_agent(agent=agent, actor=owner)
    assert is_active(stranger_token) is True
