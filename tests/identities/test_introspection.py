"""POST /oauth/introspect (RFC 7662): gateway, admin and auditor tokens only; inactive for anything
that is not a live credential of ours."""

from __future__ import annotations

import time
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.utils import timezone

from identities import keys
from identities.credential_jwt import issuer, mint_credential
from identities.models import Credential, SigningKey
from tests.helpers.oauth import form_post, hs256_token, unsigned_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def introspect(api_client, gateway):
    caller = api_client.as_user(gateway)

    def _introspect(token, as_client=None):
        return form_post(as_client or caller, "/oauth/introspect", {"token": token})

    return _introspect


def claims_of(token):
    return jwt.decode(token, options={"verify_signature": False})


def test_a_gateway_sees_a_live_credential_as_active_with_its_claims(introspect, access_token, instance, envelope):
    response = introspect(access_token)

    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    body = response.json()
    claims = claims_of(access_token)
    assert body["active"] is True
    for name in ("sub", "scope", "exp", "iat", "jti", "envelope"):
        assert body[name] == claims[name]
    assert body["sub"] == instance.spiffe_id and body["envelope"] == str(envelope.id)
    assert body["client_id"] == instance.spiffe_id
    assert "act" not in body


@pytest.mark.parametrize("role", ["admin", "auditor"])
def test_admins_and_auditors_may_introspect(request, api_client, introspect, access_token, role):
    caller = api_client.as_user(request.getfixturevalue(role))
    assert introspect(access_token, caller).json()["active"] is True


def test_an_agent_owner_may_not_introspect(api_client, introspect, access_token, owner):
    response = introspect(access_token, api_client.as_user(owner))
    assert response.status_code == 403 and response.json()["error"] == "insufficient_scope"


def test_introspection_without_a_caller_token_is_unauthenticated(client, access_token):
    response = form_post(client, "/oauth/introspect", {"token": access_token})
    assert response.status_code == 401 and "Bearer" in response["WWW-Authenticate"]


def test_introspection_with_a_bad_caller_token_is_unauthenticated(client, access_token):
    response = form_post(client, "/oauth/introspect", {"token": access_token}, HTTP_AUTHORIZATION="Bearer mdt_nope")
    assert response.status_code == 401


def test_an_access_token_is_not_a_caller_credential(client, access_token):
    response = form_post(
        client, "/oauth/introspect", {"token": access_token}, HTTP_AUTHORIZATION=f"Bearer {access_token}"
    )
    assert response.status_code == 401


def test_a_missing_token_parameter_is_an_invalid_request(api_client, gateway):
    response = form_post(api_client.as_user(gateway), "/oauth/introspect", {})
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_a_revoked_credential_is_inactive(introspect, access_token, owner):
    from tasks.lifecycle import revoke_credential

    revoke_credential(credential=Credential.objects.get(), actor=owner, reason="test")
    assert introspect(access_token).json() == {"active": False}


def test_an_expired_credential_is_inactive(introspect, instance, envelope):
    now = timezone.now()
    minted = mint_credential(
        instance=instance,
        envelope=envelope,
        scopes=["github:write"],
        audience="mandate",
        expires_at=now - timedelta(seconds=1),
        now=now - timedelta(seconds=61),
    )
    assert introspect(minted.token).json() == {"active": False}


def test_a_credential_past_exp_in_the_database_is_inactive(introspect, access_token):
    Credential.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert introspect(access_token).json() == {"active": False}


def token_without_a_row(instance, envelope) -> str:
    """A token we signed, well formed and unexpired, whose credential row is gone."""
    minted = mint_credential(
        instance=instance,
        envelope=envelope,
        scopes=["github:write"],
        audience="mandate",
        expires_at=timezone.now() + timedelta(minutes=5),
    )
    Credential.objects.filter(jti=minted.credential.jti).delete()
    return minted.token


def test_a_well_signed_token_without_a_credential_row_is_inactive(introspect, instance, envelope):
    assert introspect(token_without_a_row(instance, envelope)).json() == {"active": False}


def test_a_token_we_did_not_sign_is_inactive_even_with_our_kid(introspect, access_token):
    forged = jwt.encode(
        claims_of(access_token),
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": jwt.get_unverified_header(access_token)["kid"], "typ": "JWT"},
    )
    assert introspect(forged).json() == {"active": False}


def test_a_token_with_altered_claims_is_inactive(introspect, access_token):
    header, _, signature = access_token.split(".")
    claims = {**claims_of(access_token), "scope": "github:write github:admin"}
    import json

    from tests.helpers.oauth import b64

    tampered = f"{header}.{b64(json.dumps(claims).encode())}.{signature}"
    assert introspect(tampered).json() == {"active": False}


def test_alg_none_is_inactive(introspect, access_token):
    assert introspect(unsigned_token(claims_of(access_token))).json() == {"active": False}


def test_an_hs256_token_keyed_with_our_public_key_is_inactive(introspect, access_token):
    kid = jwt.get_unverified_header(access_token)["kid"]
    public = keys.verification_key(kid)
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    jwk = next(k for k in keys.public_jwks() if k["kid"] == kid)
    import json

    for secret in (pem, json.dumps(jwk).encode(), kid.encode()):
        confused = hs256_token({"alg": "HS256", "kid": kid, "typ": "JWT"}, claims_of(access_token), secret)
        assert introspect(confused).json() == {"active": False}


@pytest.mark.parametrize("kid", ["unknown-kid", "../../../etc/passwd", "' OR '1'='1", "x" * 5000, ""])
def test_an_unknown_or_injected_kid_is_inactive(introspect, access_token, kid):
    _header, payload, signature = access_token.split(".")
    import json

    from tests.helpers.oauth import b64

    forged_header = b64(json.dumps({"alg": "ES256", "kid": kid, "typ": "JWT"}).encode())
    assert introspect(f"{forged_header}.{payload}.{signature}").json() == {"active": False}


def test_a_token_of_a_retired_signing_key_is_inactive(introspect, access_token):
    kid = jwt.get_unverified_header(access_token)["kid"]
    keys.rotate_signing_key(actor=None, immediately=True)
    SigningKey.objects.filter(kid=kid).update(status=SigningKey.Status.RETIRED)
    keys._invalidate()
    assert introspect(access_token).json() == {"active": False}


def test_a_token_of_a_retiring_key_is_still_active(introspect, access_token):
    keys.rotate_signing_key(actor=None, immediately=True)
    keys._invalidate()
    assert introspect(access_token).json()["active"] is True


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "e30.e30.", "." * 3, "x" * 20000, "ä.ö.ü"])
def test_malformed_tokens_are_inactive(introspect, token):
    response = introspect(token)
    assert response.status_code in (200, 400)
    if response.status_code == 200:
        assert response.json() == {"active": False}


def test_a_token_with_a_header_member_too_many_is_inactive(introspect, instance, envelope):
    key = keys.active_signing_key()
    now = int(time.time())
    claims = {
        "iss": issuer(),
        "sub": instance.spiffe_id,
        "aud": "mandate",
        "exp": now + 60,
        "iat": now,
        "jti": "extra-header",
        "scope": "github:write",
        "envelope": str(envelope.id),
    }
    token = jwt.encode(
        claims,
        key.private_key,
        algorithm="ES256",
        headers={"kid": key.kid, "typ": "JWT", "jku": "https://evil.example"},
    )
    assert introspect(token).json() == {"active": False}


def test_introspection_is_one_statement_once_the_caller_is_remembered(
    introspect, access_token, django_assert_num_queries
):
    from django.db import connection

    assert introspect(access_token).json()["active"] is True  # the caller read (one query), remembered
    # Then both rate-limit counts (per address, per caller), the credential with its instance, agent
    # and envelope, and the caller's standing: one statement on PostgreSQL; SQLite cannot put the
    # counts' INSERT in a WITH, and sends the read after it.
    with django_assert_num_queries(1 if connection.vendor == "postgresql" else 2):
        assert introspect(access_token).json()["active"] is True


def test_a_caller_is_remembered_for_a_few_seconds_only(
    introspect, access_token, django_assert_num_queries, monkeypatch
):
    from django.db import connection

    from accounts import authentication

    monkeypatch.setattr(authentication._remembered, "seconds", 0.0)
    introspect(access_token)
    with django_assert_num_queries(2 if connection.vendor == "postgresql" else 3):  # the caller read again
        assert introspect(access_token).json()["active"] is True


def test_a_token_introspected_again_is_not_verified_again_but_revocation_still_counts(
    introspect, access_token, admin, monkeypatch
):
    from django.db import transaction

    from identities import credential_jwt
    from tasks import decisions
    from tasks.lifecycle import revoke_credentials

    verifications = []
    real = credential_jwt.verify_access_token
    monkeypatch.setattr(decisions, "verify_access_token", lambda t: verifications.append(t) or real(t))
    assert introspect(access_token).json()["active"] is True
    assert introspect(access_token).json()["active"] is True
    assert len(verifications) == 1
    with transaction.atomic():
        revoke_credentials(jtis=[claims_of(access_token)["jti"]], actor=admin, reason="leaked")
    assert introspect(access_token).json() == {"active": False}


# --- the caller, read fresh on every request (one query: token, user and roles) -------------------


def test_a_gateway_token_revoked_expired_or_deactivated_is_refused_on_the_very_next_request(
    introspect, access_token, gateway
):
    from accounts.models import ApiToken

    assert introspect(access_token).status_code == 200
    token = ApiToken.objects.get(user=gateway)

    token.revoked_at = timezone.now()
    token.save()
    refused = introspect(access_token)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_token"

    token.revoked_at, token.expires_at = None, timezone.now() - timedelta(seconds=1)
    token.save()
    assert introspect(access_token).status_code == 401

    token.expires_at = None
    token.save()
    gateway.is_active = False
    gateway.save()
    assert introspect(access_token).status_code == 401


def test_a_gateway_whose_role_is_removed_is_refused_on_the_very_next_request(introspect, access_token, gateway):
    assert introspect(access_token).status_code == 200
    gateway.groups.clear()
    refused = introspect(access_token)
    assert refused.status_code == 403 and refused.json()["error"] == "insufficient_scope"


def test_a_superuser_in_no_group_may_introspect(api_client, introspect, access_token):
    from django.contrib.auth.models import User

    root = User.objects.create_superuser("root", "root@example.test", "x" * 20)
    assert introspect(access_token, api_client.as_user(root)).json()["active"] is True


def test_a_user_in_other_groups_only_may_not_introspect(api_client, introspect, access_token):
    from django.contrib.auth.models import Group, User

    someone = User.objects.create_user("someone", "someone@example.test", "x" * 20)
    someone.groups.add(Group.objects.create(name="not-a-role"))
    assert introspect(access_token, api_client.as_user(someone)).status_code == 403


# --- a remembered caller: who asks is remembered for a few seconds, whether they may never is ------


def _revoke_behind_this_process(user):
    """As another process, or a database console, would: no model method, no signal here."""
    from accounts.models import ApiToken

    assert ApiToken.objects.filter(user=user).update(revoked_at=timezone.now()) >= 1


def test_a_remembered_caller_revoked_elsewhere_is_refused_on_the_very_next_request(introspect, access_token, gateway):
    assert introspect(access_token).json()["active"] is True  # remembered now
    _revoke_behind_this_process(gateway)

    for _ in range(2):  # refused, forgotten, and refused again on a fresh read
        refused = introspect(access_token)
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_token"
        assert refused["WWW-Authenticate"] == 'Bearer error="invalid_token"'


@pytest.mark.parametrize("token", ["not-a-jwt", "", None], ids=["a token that does not verify", "empty", "missing"])
def test_a_remembered_caller_revoked_elsewhere_cannot_even_ask_about_a_bad_token(
    api_client, introspect, access_token, gateway, token
):
    """Nothing to read a credential with: the caller's standing is read on its own."""
    caller = api_client.as_user(gateway)
    assert introspect(access_token, caller).json()["active"] is True
    _revoke_behind_this_process(gateway)

    response = form_post(caller, "/oauth/introspect", {} if token is None else {"token": token})

    assert response.status_code == 401 and response.json()["error"] == "invalid_token"


def test_a_remembered_caller_revoked_elsewhere_cannot_ask_about_a_token_without_a_row(
    introspect, access_token, gateway, instance, envelope
):
    assert introspect(access_token).json()["active"] is True
    orphan = token_without_a_row(instance, envelope)
    _revoke_behind_this_process(gateway)

    assert introspect(orphan).status_code == 401


def test_a_remembered_caller_whose_user_is_deactivated_elsewhere_is_refused(introspect, access_token, gateway):
    assert introspect(access_token).json()["active"] is True
    type(gateway).objects.filter(pk=gateway.pk).update(is_active=False)

    assert introspect(access_token).status_code == 401


def test_a_remembered_caller_whose_api_token_expired_is_refused(introspect, access_token, gateway):
    from accounts.models import ApiToken

    assert introspect(access_token).json()["active"] is True
    ApiToken.objects.filter(user=gateway).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert introspect(access_token).status_code == 401


def test_a_remembered_caller_whose_last_introspecting_role_goes_is_refused_as_before(introspect, access_token, gateway):
    from django.contrib.auth.models import Group

    from accounts.roles import AUDITOR

    gateway.groups.add(Group.objects.get_or_create(name=AUDITOR)[0])
    assert introspect(access_token).json()["active"] is True
    gateway.groups.remove(Group.objects.get(name=AUDITOR))
    assert introspect(access_token).json()["active"] is True  # still a gateway

    gateway.groups.clear()
    refused = introspect(access_token)
    assert refused.status_code == 403 and refused.json()["error"] == "insufficient_scope"


def test_a_caller_who_may_not_introspect_is_not_remembered_so_a_role_granted_counts_at_once(
    api_client, introspect, access_token
):
    from django.contrib.auth.models import Group, User

    from accounts.roles import AUDITOR

    someone = User.objects.create_user("someone", "someone@example.test", "x" * 20)
    as_someone = api_client.as_user(someone)
    assert introspect(access_token, as_someone).status_code == 403

    someone.groups.add(Group.objects.get_or_create(name=AUDITOR)[0])

    assert introspect(access_token, as_someone).json()["active"] is True


@pytest.mark.postgres
def test_introspections_one_statement_is_prepared_and_planned_generically(introspect, access_token):
    """The counts, the credential and the caller's standing: prepared once per connection, and run
    on its generic plan (planning a four-table join on every call cost PostgreSQL more than running
    it)."""
    from django.db import connection

    for _ in range(8):
        assert introspect(access_token).json()["active"] is True
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE %s",
            ['WITH counted AS (INSERT INTO "mandate_rate_counter"%"identities_credential"%'],
        )
        plans = cursor.fetchall()
    assert len(plans) == 1 and plans[0][0] >= 6 and plans[0][1] == 0, plans


def test_the_answer_is_json_as_django_writes_it_and_never_cached(introspect, access_token):
    from django.http import JsonResponse

    for answer in (introspect(access_token), introspect("not-a-jwt")):
        assert answer["Content-Type"] == "application/json"
        assert answer.content == JsonResponse(answer.json()).content
        assert answer["Cache-Control"] == "no-store" and answer["Pragma"] == "no-cache"
    assert introspect(access_token).json()["client_id"] == claims_of(access_token)["sub"]
