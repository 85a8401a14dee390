"""POST /oauth/token refusals: every one an RFC 6749 error body with a 4xx, never a credential."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from django.utils import timezone

from identities import services as identity_services
from identities.assertions import purge_used_assertions
from identities.models import Credential, UsedAssertion
from tasks import lifecycle
from tasks import services as task_services
from tasks.models import TaskEnvelope
from tests.helpers.factories import make_agent, make_envelope, make_instance, new_ed25519_key
from tests.helpers.oauth import (
    assertion_for,
    form_post,
    hs256_token,
    post_token,
    refused,
    token_form,
    unsigned_token,
)

pytestmark = pytest.mark.django_db


def refused_and_none_issued(response, error: str) -> dict:
    """The OAuth refusal, and no credential exists afterwards."""
    body = refused(response, error)
    assert Credential.objects.count() == 0
    return body


# --- the client assertion ------------------------------------------------------------------------


def test_an_assertion_signed_by_another_key_is_refused(issue, instance, envelope):
    stranger, _ = new_ed25519_key()
    refused_and_none_issued(
        issue(instance, envelope, client_assertion=assertion_for(instance, key=stranger)), "invalid_client"
    )


def test_a_replayed_assertion_is_refused(client, instance, envelope):
    form = token_form(instance, envelope)
    assert post_token(client, form).status_code == 200

    response = post_token(client, form)

    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    assert "replayed" in response.json()["error_description"]
    assert Credential.objects.count() == 1


def test_a_refused_assertion_is_used_up_all_the_same(client, instance, envelope):
    form = token_form(instance, envelope, scope="github:admin")
    refused_and_none_issued(post_token(client, form), "invalid_scope")

    form["scope"] = "github:write"

    refused_and_none_issued(post_token(client, form), "invalid_client")


def test_an_expired_assertion_is_refused(issue, instance, envelope):
    now = int(time.time())
    old = assertion_for(instance, iat=now - 200, exp=now - 60)
    refused_and_none_issued(issue(instance, envelope, client_assertion=old), "invalid_client")


def test_an_assertion_living_an_hour_as_standard_clients_sign_it_is_accepted(issue, instance, envelope):
    response = issue(instance, envelope, client_assertion=assertion_for(instance, lifetime=3600))
    assert response.status_code == 200, response.content


def test_an_assertion_living_longer_than_an_hour_is_refused(issue, instance, envelope):
    response = issue(instance, envelope, client_assertion=assertion_for(instance, lifetime=3601))
    body = refused_and_none_issued(response, "invalid_client")
    assert "3600 s after" in body["error_description"]


def test_an_hour_long_assertion_is_still_single_use(client, instance, envelope):
    form = token_form(instance, envelope, client_assertion=assertion_for(instance, lifetime=3600))
    assert post_token(client, form).status_code == 200

    body = refused(post_token(client, form), "invalid_client")
    assert "replayed" in body["error_description"] and Credential.objects.count() == 1


def test_the_replay_record_of_a_long_assertion_is_kept_until_it_expires(client, instance, envelope):
    assertion = assertion_for(instance, lifetime=3600)
    assert post_token(client, token_form(instance, envelope, client_assertion=assertion)).status_code == 200
    exp = jwt.decode(assertion, options={"verify_signature": False})["exp"]

    # A purge well inside the hour keeps it; only one after exp (and the leeway) drops it.
    assert purge_used_assertions(datetime.fromtimestamp(exp - 60, tz=UTC)) == 0
    assert UsedAssertion.objects.count() == 1
    assert purge_used_assertions(datetime.fromtimestamp(exp + 31, tz=UTC)) == 1


def test_an_assertion_signed_more_than_a_minute_ago_is_refused_even_if_unexpired(issue, instance, envelope):
    now = int(time.time())
    stale = assertion_for(instance, iat=now - 60 - 30 - 5, exp=now + 3000)
    body = refused_and_none_issued(issue(instance, envelope, client_assertion=stale), "invalid_client")
    assert "fresh assertion" in body["error_description"]


def test_an_assertion_signed_a_minute_ago_within_the_leeway_is_accepted(issue, instance, envelope):
    now = int(time.time())
    recent = assertion_for(instance, iat=now - 60 - 20, exp=now + 3000)
    assert issue(instance, envelope, client_assertion=recent).status_code == 200


def test_an_assertion_whose_exp_is_not_after_its_iat_is_refused(issue, instance, envelope):
    now = int(time.time())
    refused_and_none_issued(
        issue(instance, envelope, client_assertion=assertion_for(instance, iat=now, exp=now)), "invalid_client"
    )


def test_an_assertion_issued_in_the_future_is_refused(issue, instance, envelope):
    now = int(time.time())
    refused_and_none_issued(
        issue(instance, envelope, client_assertion=assertion_for(instance, iat=now + 120, exp=now + 240)),
        "invalid_client",
    )


def test_an_assertion_with_string_times_is_refused(issue, instance, envelope):
    now = int(time.time())
    refused_and_none_issued(
        issue(instance, envelope, client_assertion=assertion_for(instance, exp=str(now + 60))), "invalid_client"
    )


@pytest.mark.parametrize(
    "aud",
    [
        "https://elsewhere.example/oauth/token",
        "http://testserver/oauth/token/",
        ["http://testserver/oauth/token", "https://elsewhere.example"],
        "mandate",
    ],
)
def test_an_assertion_for_another_audience_is_refused(issue, instance, envelope, aud):
    refused_and_none_issued(
        issue(instance, envelope, client_assertion=assertion_for(instance, aud=aud)), "invalid_client"
    )


@pytest.mark.parametrize("missing", ["jti", "exp", "iat", "aud", "iss", "sub"])
def test_an_assertion_without_a_required_claim_is_refused(issue, instance, envelope, missing):
    refused_and_none_issued(
        issue(instance, envelope, client_assertion=assertion_for(instance, **{missing: None})), "invalid_client"
    )


def test_an_assertion_with_alg_none_is_refused(issue, instance, envelope):
    now = int(time.time())
    claims = {
        "iss": instance.spiffe_id,
        "sub": instance.spiffe_id,
        "aud": "http://testserver/oauth/token",
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    refused_and_none_issued(issue(instance, envelope, client_assertion=unsigned_token(claims)), "invalid_client")


def test_an_hs256_assertion_keyed_with_the_instance_public_key_is_refused(issue, instance, envelope):
    now = int(time.time())
    claims = {
        "iss": instance.spiffe_id,
        "sub": instance.spiffe_id,
        "aud": "http://testserver/oauth/token",
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    public = instance.private_key.public_key()
    for secret in (
        public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        json.dumps(instance.public_jwk).encode(),
    ):
        token = hs256_token({"alg": "HS256", "typ": "JWT"}, claims, secret)
        refused_and_none_issued(issue(instance, envelope, client_assertion=token), "invalid_client")


@pytest.mark.parametrize(
    "header",
    [
        {"jwk": {"kty": "OKP"}},
        {"jku": "https://evil.example/jwks"},
        {"x5u": "https://evil.example/cert"},
        {"typ": "at+jwt"},
        {"crit": ["exp"]},
    ],
)
def test_an_assertion_with_injected_header_members_is_refused(issue, instance, envelope, header):
    refused_and_none_issued(
        issue(instance, envelope, client_assertion=assertion_for(instance, headers=header)), "invalid_client"
    )


def test_an_assertion_whose_iss_and_sub_differ_is_refused(issue, agent, instance, envelope):
    other = make_instance(agent, label="other")
    refused_and_none_issued(
        issue(instance, envelope, client_assertion=assertion_for(instance, sub=other.spiffe_id)), "invalid_client"
    )


@pytest.mark.parametrize(
    "spiffe_id",
    [
        "spiffe://elsewhere.test/agent/invoice-triage/instance/{id}",
        "spiffe://mandate.local/agent/invoice-triage/instance/{id}/",
        "spiffe://mandate.local/agent/other-agent/instance/{id}",
        "spiffe://mandate.local/agent/invoice-triage/../instance/{id}",
        "spiffe://mandate.local/agent/invoice-triage/instance/{ID}",
        "https://mandate.local/agent/invoice-triage/instance/{id}",
        "spiffe://mandate.local/agent/invoice-triage/instance/not-a-uuid",
    ],
)
def test_an_assertion_naming_a_malformed_or_foreign_spiffe_id_is_refused(issue, instance, envelope, spiffe_id):
    name = spiffe_id.format(id=instance.id, ID=str(instance.id).upper())
    refused_and_none_issued(
        issue(instance, envelope, client_assertion=assertion_for(instance, iss=name, sub=name)), "invalid_client"
    )


def test_an_assertion_of_an_unknown_instance_is_refused(issue, instance, envelope):
    name = f"spiffe://mandate.local/agent/invoice-triage/instance/{uuid.uuid4()}"
    refused_and_none_issued(
        issue(instance, envelope, client_assertion=assertion_for(instance, iss=name, sub=name)), "invalid_client"
    )


def test_a_client_id_that_does_not_match_the_assertion_is_refused(issue, instance, envelope):
    refused_and_none_issued(
        issue(instance, envelope, client_id="spiffe://mandate.local/someone-else"), "invalid_client"
    )


@pytest.mark.parametrize("assertion", ["", "not-a-jwt", "a.b.c", "x" * 10000, "e30.e30.", "..."])
def test_garbage_assertions_are_refused(issue, instance, envelope, assertion):
    body = {"client_assertion": assertion} if assertion else {"client_assertion": None}
    response = issue(instance, envelope, **body)
    assert response.status_code in (400, 401)
    assert response.json()["error"] in ("invalid_client", "invalid_request")


def test_the_wrong_client_assertion_type_is_refused(issue, instance, envelope):
    refused_and_none_issued(
        issue(instance, envelope, client_assertion_type="urn:ietf:params:oauth:client-assertion-type:saml2-bearer"),
        "invalid_client",
    )


# --- the envelope --------------------------------------------------------------------------------


def test_a_pending_envelope_gets_no_credential(issue, instance):
    envelope = make_envelope(instance)
    assert envelope.state == "pending"
    refused_and_none_issued(issue(instance, envelope), "invalid_grant")


def test_a_denied_envelope_gets_no_credential(issue, instance, admin):
    envelope = task_services.deny_envelope(envelope=make_envelope(instance), actor=admin, comment="no")
    refused_and_none_issued(issue(instance, envelope), "invalid_grant")


def test_an_envelope_past_its_end_gets_no_credential_even_before_the_sweep(issue, instance, envelope):
    TaskEnvelope.objects.filter(pk=envelope.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    refused_and_none_issued(issue(instance, envelope), "invalid_grant")


def test_an_expired_envelope_gets_no_credential(issue, instance, envelope):
    TaskEnvelope.objects.filter(pk=envelope.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert lifecycle.expire_envelope(envelope_id=envelope.id)
    refused_and_none_issued(issue(instance, envelope), "invalid_grant")


@pytest.mark.parametrize("end", ["revoke", "complete"])
def test_an_ended_envelope_gets_no_credential(issue, instance, envelope, owner, end):
    getattr(lifecycle, f"{end}_envelope")(envelope=envelope, actor=owner)
    refused_and_none_issued(issue(instance, envelope), "invalid_grant")


def test_a_superseded_envelope_gets_no_credential(issue, instance, envelope, owner):
    lifecycle.retask_envelope(
        envelope=envelope,
        actor=owner,
        intent="new task",
        scopes=["github:read"],
        resources=[],
        duration_seconds=600,
        max_actions=5,
    )
    refused_and_none_issued(issue(instance, envelope), "invalid_grant")


def test_an_envelope_of_another_instance_is_refused(issue, agent, instance, envelope):
    other = make_instance(agent, label="other")
    refused_and_none_issued(issue(other, envelope), "invalid_grant")


def test_an_envelope_of_another_agent_is_refused(issue, other_owner, envelope):
    stranger = make_instance(make_agent(other_owner, slug="stranger"))
    refused_and_none_issued(issue(stranger, envelope), "invalid_grant")


def test_a_clone_cannot_use_its_parents_envelope(issue, instance, envelope, owner):
    private, jwk = new_ed25519_key()
    clone = identity_services.clone_instance(parent=instance, actor=owner, public_jwk=jwk, label="clone")
    clone.private_key = private

    body = refused_and_none_issued(issue(clone, envelope), "invalid_grant")
    assert "no such envelope" in body["error_description"]


def test_an_unknown_envelope_is_refused(issue, instance, envelope):
    form_envelope = type("E", (), {"id": uuid.uuid4()})()
    refused_and_none_issued(issue(instance, form_envelope), "invalid_grant")


@pytest.mark.parametrize("value", ["not-a-uuid", "", "1 OR 1=1"])
def test_a_malformed_envelope_id_is_an_invalid_request(client, instance, envelope, value):
    form = token_form(instance, envelope)
    form["envelope"] = value
    refused_and_none_issued(post_token(client, form), "invalid_request")


def test_a_scope_wider_than_the_envelope_is_refused(issue, instance, envelope):
    refused_and_none_issued(issue(instance, envelope, scope="github:write github:read"), "invalid_scope")


@pytest.mark.parametrize("scope", ["", " ", "github:write  jira:read", "GITHUB:WRITE", "x" * 300])
def test_a_malformed_scope_is_refused(issue, instance, envelope, scope):
    refused_and_none_issued(issue(instance, envelope, scope=scope), "invalid_scope")


@pytest.mark.parametrize("ttl", ["0", "-5", "abc", "1.5", "99999999999", "٣"])
def test_a_malformed_ttl_is_an_invalid_request(issue, instance, envelope, ttl):
    refused_and_none_issued(issue(instance, envelope, ttl=ttl), "invalid_request")


def test_a_paused_instance_gets_no_credential(issue, instance, envelope, owner):
    lifecycle.pause_instance(instance=instance, actor=owner)
    refused_and_none_issued(issue(instance, envelope), "invalid_grant")


def test_a_retired_instance_is_no_longer_a_client(issue, instance, envelope, owner):
    lifecycle.retire_instance(instance=instance, actor=owner)
    refused_and_none_issued(issue(instance, envelope), "invalid_client")


def test_an_instance_of_a_paused_agent_gets_no_credential(issue, agent, instance, envelope, owner):
    lifecycle.pause_agent(agent=agent, actor=owner)
    refused_and_none_issued(issue(instance, envelope), "invalid_grant")


# --- the request itself --------------------------------------------------------------------------


def test_an_unknown_grant_type_is_refused(issue, instance, envelope):
    refused_and_none_issued(issue(instance, envelope, grant_type="password"), "unsupported_grant_type")


def test_a_missing_grant_type_is_an_invalid_request(issue, instance, envelope):
    refused_and_none_issued(issue(instance, envelope, grant_type=None), "invalid_request")


def test_a_repeated_parameter_is_an_invalid_request(client, instance, envelope):
    form = token_form(instance, envelope)
    form["scope"] = ["github:write", "github:read"]
    refused_and_none_issued(form_post(client, "/oauth/token", form), "invalid_request")


def test_a_json_body_is_an_invalid_request(client, instance, envelope):
    response = client.post("/oauth/token", json.dumps(token_form(instance, envelope)), content_type="application/json")
    refused_and_none_issued(response, "invalid_request")


def test_a_get_is_refused_without_a_server_error(client):
    response = client.get("/oauth/token")
    assert response.status_code == 405 and response.json()["error"] == "invalid_request"


def test_an_oversized_body_is_refused_without_a_server_error(client, instance, envelope, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    refused_and_none_issued(post_token(client, token_form(instance, envelope, padding="x" * 5000)), "invalid_request")


def test_a_database_deadlock_is_retried_once_then_answered_503(client, instance, envelope, monkeypatch):
    from django.db import OperationalError

    from tasks import oauth

    class Deadlock(Exception):
        sqlstate = "40P01"

    calls = []

    def deadlocked(request, params):
        calls.append(1)
        try:
            raise Deadlock()
        except Deadlock as cause:
            raise OperationalError("deadlock detected") from cause

    monkeypatch.setitem(oauth._GRANTS, "client_credentials", deadlocked)
    response = post_token(client, token_form(instance, envelope))
    assert response.status_code == 503 and response.json()["error"] == "temporarily_unavailable"
    assert len(calls) == 2
