"""POST /oauth/token, client_credentials: what a well-behaved instance gets."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest
from django.db import connection
from django.utils import timezone

from audit.models import AuditEvent
from identities.models import Credential, Instance
from tasks.models import TaskEnvelope
from tests.helpers.factories import make_envelope, make_instance, new_p256_key
from tests.helpers.oauth import approve, assertion_for, post_token, token_form

pytestmark = pytest.mark.django_db


def test_an_instance_gets_a_credential_for_its_approved_envelope(issue, instance, envelope):
    response = issue(instance, envelope)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope", "envelope", "envelope_expires_in"}
    assert 0 < body["envelope_expires_in"] <= envelope.duration_seconds  # when the authority behind it ends
    assert body["token_type"] == "Bearer" and body["envelope"] == str(envelope.id)
    assert body["scope"] == "github:write" and body["expires_in"] == 300
    assert response["Cache-Control"] == "no-store"


def test_the_token_is_a_jwt_svid_with_exactly_the_contract_header_and_claims(issue, instance, envelope):
    token = issue(instance, envelope).json()["access_token"]

    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert set(header) == {"alg", "kid", "typ"} and header["alg"] == "ES256" and header["typ"] == "JWT"
    assert set(claims) == {"iss", "sub", "aud", "exp", "iat", "jti", "scope", "envelope"}
    assert claims["sub"] == instance.spiffe_id and claims["aud"] == "mandate"
    assert claims["envelope"] == str(envelope.id) and claims["exp"] - claims["iat"] == 300


def test_the_credential_is_recorded_by_jti_but_the_token_is_never_stored(issue, instance, envelope):
    token = issue(instance, envelope).json()["access_token"]
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]

    credential = Credential.objects.get(jti=jti)
    assert credential.instance_id == instance.id and credential.envelope_id == envelope.id
    assert credential.scopes == ["github:write"] and credential.status == "active"
    stored = " ".join(str(v) for v in Credential.objects.values_list().get(jti=jti))
    assert token not in stored
    for row in AuditEvent.objects.values_list("before", "after", "reason"):
        assert token not in str(row)


def test_the_first_credential_moves_the_envelope_to_active_and_is_audited(issue, instance, envelope):
    assert envelope.state == TaskEnvelope.State.APPROVED
    issue(instance, envelope)
    issue(instance, envelope)

    envelope.refresh_from_db()
    assert envelope.state == TaskEnvelope.State.ACTIVE
    assert AuditEvent.objects.filter(verb="envelope.activated", target_id=str(envelope.id)).count() == 1
    issued = AuditEvent.objects.filter(verb="credential.issued").order_by("seq")
    assert issued.count() == 2
    assert issued[0].actor == instance.spiffe_id and issued[0].actor_type == "instance"
    assert issued[0].after["envelope"] == str(envelope.id)


def test_a_narrower_scope_is_granted_as_asked(issue, agent, admin):
    instance = make_instance(agent)
    envelope = approve(make_envelope(instance, scopes=("github:read", "github:write")), admin)

    body = issue(instance, envelope, scope="github:read").json()

    assert body["scope"] == "github:read"


def test_without_a_scope_the_credential_carries_every_scope_of_the_envelope(issue, agent, admin):
    instance = make_instance(agent)
    envelope = approve(make_envelope(instance, scopes=("github:read", "github:write")), admin)

    assert issue(instance, envelope).json()["scope"] == "github:read github:write"


def test_a_requested_ttl_is_capped_by_the_policy_ceiling(issue, instance, envelope, settings):
    from tasks.issuance import policy_ttl_ceiling

    body = issue(instance, envelope, ttl="86400").json()

    ceiling = min(policy_ttl_ceiling(envelope), settings.MANDATE_CREDENTIAL_MAX_TTL)
    assert ceiling < 86400 and body["expires_in"] == ceiling


def test_a_short_requested_ttl_is_honoured(issue, instance, envelope):
    assert issue(instance, envelope, ttl="60").json()["expires_in"] == 60


def test_a_credential_never_outlives_its_envelope(issue, instance, envelope):
    ends = timezone.now() + timedelta(seconds=45)
    TaskEnvelope.objects.filter(pk=envelope.pk).update(expires_at=ends)

    token = issue(instance, envelope, ttl="600").json()["access_token"]

    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    assert exp <= int(ends.timestamp())
    assert Credential.objects.get().expires_at <= ends


def test_the_requested_audience_becomes_the_single_aud(issue, instance, admin):
    envelope = approve(make_envelope(instance, audiences=["https://tools.example.test"]), admin)
    token = issue(instance, envelope, audience="https://tools.example.test").json()["access_token"]

    assert jwt.decode(token, options={"verify_signature": False})["aud"] == "https://tools.example.test"


def test_an_instance_with_a_p256_key_signs_its_assertion_with_es256(client, agent, admin):
    from identities import services

    private, jwk = new_p256_key()
    instance = services.register_instance(agent=agent, actor=agent.owner, public_jwk=jwk)
    envelope = approve(make_envelope(instance), admin)
    form = token_form(instance, envelope, client_assertion=assertion_for(instance, key=private, alg="ES256"))

    assert post_token(client, form).status_code == 200


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL prepares statements; SQLite plans each")
def test_a_mints_statements_are_planned_once_per_connection(issue, instance, envelope):
    """Parsing and planning the mint's statements cost PostgreSQL about as much as running them (the
    live count's plan alone more than its run): each is prepared on the connection once, and the
    next mints run on it. BEGIN and COMMIT are the only statements a mint sends as plain text."""
    for _ in range(3):
        assert issue(instance, envelope).status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]

    def has(*fragments):
        return any(all(fragment in text for fragment in fragments) for text in prepared)

    assert has('INSERT INTO "mandate_rate_counter"')  # both rate-limit counts share one statement
    assert has('INSERT INTO "identities_usedassertion"', "ON CONFLICT")  # the assertion's jti, once
    assert has("pg_advisory_xact_lock", 'FROM "tasks_taskenvelope"', "FOR KEY SHARE")  # the envelope, its turn
    assert has("SELECT count(*)", 'FROM "identities_credential"')  # the live-credential cap
    assert has('INSERT INTO "identities_credential"')
    assert has('UPDATE "console_auditchain" SET "length"')  # the audit chain's head advanced
    assert has('INSERT INTO "console_auditevent"')  # the audit row, with the head's new hash


def test_last_seen_is_recorded_but_not_rewritten_on_every_call(issue, instance, envelope, django_assert_num_queries):
    issue(instance, envelope)
    first = Instance.objects.get(pk=instance.pk).last_seen_at
    assert first is not None

    issue(instance, envelope)

    assert Instance.objects.get(pk=instance.pk).last_seen_at == first


def test_minting_stays_within_a_few_queries(issue, instance, envelope, django_assert_num_queries):
    from django.db import connection
    from django.test import Client

    issue(instance, envelope)  # warm: signing key, instance key, envelope activation, last_seen
    form = token_form(instance, envelope)

    # The two rate-limit counts (per address, per client: one UPSERT each, in the database when no
    # Redis is configured); then, in the mint's transaction (here a savepoint and its release): consume
    # the jti, read envelope+instance+agent under lock (on PostgreSQL taking the live-credential cap's
    # turn in the same statement), count live credentials, insert the credential, audit (advance the
    # chain head; insert the event, on PostgreSQL setting the head's hash in the same statement).
    with django_assert_num_queries(10 if connection.vendor == "postgresql" else 11):
        assert post_token(Client(), form).status_code == 200
