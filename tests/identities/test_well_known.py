"""Discovery: JWK Set, SPIFFE bundle and RFC 8414 metadata — public halves only, cacheable."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from audit.models import AuditEvent
from identities import keys
from identities.models import SigningKey

pytestmark = pytest.mark.django_db

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k", "oth", "r", "t"}


@pytest.fixture
def signing_key():
    return keys.active_signing_key()


def test_the_jwks_lists_each_published_key_with_kid_alg_and_use_sig(client, signing_key):
    response = client.get("/.well-known/jwks.json")

    assert response.status_code == 200
    [key] = response.json()["keys"]
    assert set(key) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
    assert key["kid"] == signing_key.kid and key["alg"] == "ES256" and key["use"] == "sig"
    assert key["kty"] == "EC" and key["crv"] == "P-256"


def test_the_spiffe_bundle_uses_jwt_svid_with_a_sequence_and_refresh_hint(client, signing_key):
    body = client.get("/.well-known/spiffe-bundle").json()

    [key] = body["keys"]
    assert key["use"] == "jwt-svid" and key["kid"] == signing_key.kid
    assert set(key) == {"kty", "crv", "x", "y", "kid", "use"}
    assert isinstance(body["spiffe_sequence"], int) and body["spiffe_sequence"] > 0
    assert body["spiffe_refresh_hint"] == keys.REFRESH_HINT_SECONDS


@pytest.mark.parametrize(
    "path", ["/.well-known/jwks.json", "/.well-known/spiffe-bundle", "/.well-known/oauth-authorization-server"]
)
def test_discovery_is_public_and_cacheable_for_the_refresh_hint(client, signing_key, path):
    response = client.get(path)
    assert response.status_code == 200
    assert f"max-age={keys.REFRESH_HINT_SECONDS}" in response["Cache-Control"]
    assert "public" in response["Cache-Control"]


@pytest.mark.parametrize("path", ["/.well-known/jwks.json", "/.well-known/spiffe-bundle"])
def test_no_private_member_ever_appears(client, path):
    keys.rotate_signing_key(actor=None, immediately=True)
    keys.rotate_signing_key(actor=None)
    # Even a stored public JWK polluted with private-looking members is published by allow-list.
    SigningKey.objects.update(
        public_jwk={"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "BBBB", "d": "SECRET", "k": "SECRET"}
    )
    keys._invalidate()

    body = client.get(path).json()

    assert len(body["keys"]) == 2
    for key in body["keys"]:
        assert not PRIVATE_MEMBERS & set(key)
    assert "SECRET" not in client.get(path).content.decode()


def test_a_new_key_is_published_before_it_signs_and_the_old_one_stays_until_drained(client, signing_key):
    new = keys.rotate_signing_key(actor=None)
    assert new.status == SigningKey.Status.PUBLISHED
    assert keys.active_signing_key().kid == signing_key.kid
    assert {k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]} == {signing_key.kid, new.kid}

    # Not yet due: published for less than the refresh hint.
    assert keys.activate_due_keys(actor=None) == 0
    later = timezone.now() + timedelta(seconds=keys.REFRESH_HINT_SECONDS + 1)
    assert keys.activate_due_keys(actor=None, now=later) == 1
    keys._invalidate()
    assert keys.active_signing_key().kid == new.kid
    assert {k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]} == {signing_key.kid, new.kid}

    # The retiring key stays published until every token it signed has expired.
    assert keys.retire_drained_keys(actor=None, now=later) == 0
    drained = later + timedelta(seconds=900 + 61)
    assert keys.retire_drained_keys(actor=None, now=drained) == 1
    keys._invalidate()
    assert [k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]] == [new.kid]


def test_the_spiffe_sequence_rises_on_every_key_change(client, signing_key):
    def sequence():
        keys._invalidate()
        return client.get("/.well-known/spiffe-bundle").json()["spiffe_sequence"]

    first = sequence()
    new = keys.rotate_signing_key(actor=None)
    second = sequence()
    keys.activate_key(key=new, actor=None)
    third = sequence()
    keys.retire_drained_keys(actor=None, now=timezone.now() + timedelta(hours=1))
    fourth = sequence()
    assert first < second < third < fourth


def test_the_metadata_follows_rfc_8414(client, settings, signing_key):
    body = client.get("/.well-known/oauth-authorization-server").json()

    assert body["issuer"] == settings.MANDATE_DEVELOPMENT_URL  # MANDATE_PUBLIC_URL is unset
    assert body["token_endpoint"] == "http://testserver/oauth/token"
    assert body["jwks_uri"] == "http://testserver/.well-known/jwks.json"
    assert body["introspection_endpoint"] == "http://testserver/oauth/introspect"
    assert body["revocation_endpoint"] == "http://testserver/oauth/revoke"
    assert body["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert body["token_endpoint_auth_signing_alg_values_supported"] == ["EdDSA", "ES256"]
    assert "client_credentials" in body["grant_types_supported"]
    assert "urn:ietf:params:oauth:grant-type:token-exchange" in body["grant_types_supported"]


def test_the_metadata_advertises_the_client_assertion_limits(client):
    body = client.get("/.well-known/oauth-authorization-server").json()

    assert body["token_endpoint_auth_max_assertion_lifetime"] == 3600
    assert body["token_endpoint_auth_max_assertion_age"] == 60
    assert body["token_endpoint_auth_assertion_leeway"] == 30


def test_the_metadata_uses_the_public_url_when_set(client, settings, signing_key):
    settings.MANDATE_PUBLIC_URL = "https://mandate.example.test"
    body = client.get("/.well-known/oauth-authorization-server").json()
    assert body["issuer"] == "https://mandate.example.test"
    assert body["token_endpoint"] == "https://mandate.example.test/oauth/token"


def test_discovery_refuses_writes(client):
    assert client.post("/.well-known/jwks.json").status_code == 405


def test_rotate_signing_key_publishes_a_key_and_is_audited(signing_key):
    out = io.StringIO()
    call_command("rotate_signing_key", stdout=out)

    new_kid = out.getvalue().strip().splitlines()[-1]
    assert SigningKey.objects.get(kid=new_kid).status == SigningKey.Status.PUBLISHED
    event = AuditEvent.objects.get(verb="key.rotated", target_id=new_kid)
    assert event.after["immediately"] is False and event.actor == "manage.py rotate_signing_key"
    keys._invalidate()
    assert keys.active_signing_key().kid == signing_key.kid


def test_rotate_signing_key_immediately_signs_with_the_new_key_at_once(signing_key):
    out = io.StringIO()
    call_command("rotate_signing_key", "--immediately", stdout=out)

    new_kid = out.getvalue().strip().splitlines()[-1]
    keys._invalidate()
    assert keys.active_signing_key().kid == new_kid
    assert SigningKey.objects.get(kid=signing_key.kid).status == SigningKey.Status.RETIRING
    assert AuditEvent.objects.filter(verb="key.rotated", target_id=new_kid).exists()
    assert AuditEvent.objects.filter(verb="key.retiring", target_id=signing_key.kid).exists()
