"""Rate limits at /oauth/token and /oauth/introspect: per client address before the caller is
verified, per verified client after — never per anything a caller merely claims — answering 429
with Retry-After and an OAuth error body."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.test import Client

from tests.helpers.factories import make_envelope, make_instance
from tests.helpers.oauth import approve, assertion_for, form_post, post_token, token_form

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def one_window(monkeypatch):
    """Every request of a test counts in one window: on the clock, a test's requests could straddle a
    minute and its counts start again from zero halfway."""
    from core import ratelimit

    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(time=lambda: 7230.0))


ATTACKER = "203.0.113.9"
AGENT_HOST = "198.51.100.7"


def token_from(address, form, client=None, **extra):
    return form_post(client or Client(), "/oauth/token", form, REMOTE_ADDR=address, **extra)


def assert_slowed_down(response):
    assert response.status_code == 429
    assert response.json()["error"] == "slow_down"
    assert "too many" in response.json()["error_description"]
    assert 1 <= int(response["Retry-After"]) <= 60
    assert response["Cache-Control"] == "no-store"


GARBAGE = {"grant_type": "client_credentials", "client_assertion_type": "nope", "envelope": "x"}


def test_unauthenticated_token_requests_are_limited_per_address(settings):
    settings.MANDATE_RATE_TOKEN_PER_ADDRESS = 3
    for _ in range(3):
        assert token_from(ATTACKER, GARBAGE).status_code == 401

    assert_slowed_down(token_from(ATTACKER, GARBAGE))
    assert token_from(AGENT_HOST, GARBAGE).status_code == 401  # another address is not affected


def test_an_untrusted_forwarded_header_does_not_give_a_fresh_address(settings):
    settings.MANDATE_RATE_TOKEN_PER_ADDRESS = 2
    for n in range(2):
        token_from(ATTACKER, GARBAGE, HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")
    assert_slowed_down(token_from(ATTACKER, GARBAGE, HTTP_X_FORWARDED_FOR="192.0.2.99"))


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(settings):
    settings.MANDATE_RATE_TOKEN_PER_ADDRESS = 2
    settings.MANDATE_TRUSTED_PROXIES = ["10.0.0.0/8"]
    for _ in range(2):
        token_from("10.0.0.2", GARBAGE, HTTP_X_FORWARDED_FOR=ATTACKER)
    assert_slowed_down(token_from("10.0.0.2", GARBAGE, HTTP_X_FORWARDED_FOR=ATTACKER))
    assert token_from("10.0.0.2", GARBAGE, HTTP_X_FORWARDED_FOR=AGENT_HOST).status_code == 401


def test_a_verified_client_is_limited_however_many_addresses_it_uses(settings, instance, envelope):
    settings.MANDATE_RATE_TOKEN_PER_ADDRESS = 0
    settings.MANDATE_RATE_TOKEN_PER_CLIENT = 2
    for n in range(2):
        assert token_from(f"192.0.2.{n}", token_form(instance, envelope)).status_code == 200

    assert_slowed_down(token_from("192.0.2.50", token_form(instance, envelope)))


def test_one_clients_limit_leaves_its_neighbours_alone(settings, agent, admin, instance, envelope):
    settings.MANDATE_RATE_TOKEN_PER_CLIENT = 1
    neighbour = make_instance(agent)
    neighbours_envelope = approve(make_envelope(neighbour), admin)
    assert token_from(AGENT_HOST, token_form(instance, envelope)).status_code == 200
    assert token_from(AGENT_HOST, token_form(instance, envelope)).status_code == 429

    assert token_from(AGENT_HOST, token_form(neighbour, neighbours_envelope)).status_code == 200


def test_forged_assertions_naming_a_client_never_use_up_that_clients_limit(settings, agent, instance, envelope):
    """The per-client count starts after the signature verified: an attacker who only knows the
    victim's SPIFFE id (and signs with a key of their own) cannot throttle the victim."""
    settings.MANDATE_RATE_TOKEN_PER_CLIENT = 2
    settings.MANDATE_RATE_TOKEN_PER_ADDRESS = 0
    impostor = make_instance(agent)  # a real key, but not the victim's
    for _ in range(5):
        forged = assertion_for(instance, key=impostor.private_key)
        response = token_from(
            ATTACKER, token_form(instance, envelope, client_assertion=forged, client_id=instance.spiffe_id)
        )
        assert response.status_code == 401

    assert token_from(AGENT_HOST, token_form(instance, envelope)).status_code == 200


def test_a_refused_request_is_not_minted_or_consumed(settings, instance, envelope):
    from identities.models import Credential

    settings.MANDATE_RATE_TOKEN_PER_CLIENT = 1
    assert post_token(Client(), token_form(instance, envelope)).status_code == 200
    assert post_token(Client(), token_form(instance, envelope)).status_code == 429
    assert Credential.objects.count() == 1


# --- introspection ---------------------------------------------------------------------------------


def introspect_from(address, client, token="x"):
    return form_post(client, "/oauth/introspect", {"token": token}, REMOTE_ADDR=address)


def test_introspection_is_limited_per_address_before_the_caller_is_known(settings):
    settings.MANDATE_RATE_INTROSPECT_PER_ADDRESS = 2
    anonymous = Client()
    for _ in range(2):
        assert introspect_from(ATTACKER, anonymous).status_code == 401

    assert_slowed_down(introspect_from(ATTACKER, anonymous))


def test_a_known_callers_introspections_count_against_their_address_too(settings, api_client, gateway):
    settings.MANDATE_RATE_INTROSPECT_PER_ADDRESS = 2
    settings.MANDATE_RATE_INTROSPECT_PER_CLIENT = 0
    gate = api_client.as_user(gateway)
    for _ in range(2):
        assert introspect_from(ATTACKER, gate).json() == {"active": False}

    assert_slowed_down(introspect_from(ATTACKER, gate))
    assert_slowed_down(introspect_from(ATTACKER, Client()))  # the address is used up, whoever asks
    assert introspect_from(AGENT_HOST, gate).status_code == 200


def test_an_address_used_up_by_unknown_callers_refuses_a_known_one(settings, api_client, gateway):
    settings.MANDATE_RATE_INTROSPECT_PER_ADDRESS = 2
    forged = Client(HTTP_AUTHORIZATION="Bearer mdt_not-a-real-token")
    for _ in range(2):
        assert introspect_from(ATTACKER, forged).status_code == 401

    assert_slowed_down(introspect_from(ATTACKER, api_client.as_user(gateway)))
    assert_slowed_down(introspect_from(ATTACKER, forged))


def test_introspection_is_limited_per_verified_caller(settings, api_client, gateway, auditor):
    settings.MANDATE_RATE_INTROSPECT_PER_ADDRESS = 0
    settings.MANDATE_RATE_INTROSPECT_PER_CLIENT = 2
    gate = api_client.as_user(gateway)
    for n in range(2):
        assert introspect_from(f"192.0.2.{n}", gate).json() == {"active": False}

    assert_slowed_down(introspect_from("192.0.2.9", gate))
    assert introspect_from("192.0.2.9", api_client.as_user(auditor)).status_code == 200


def test_a_bad_api_token_does_not_count_against_the_user_it_names(settings, api_client, gateway):
    settings.MANDATE_RATE_INTROSPECT_PER_CLIENT = 1
    settings.MANDATE_RATE_INTROSPECT_PER_ADDRESS = 0
    forged = Client(HTTP_AUTHORIZATION="Bearer mdt_not-a-real-token")
    for _ in range(3):
        assert introspect_from(ATTACKER, forged).status_code == 401

    assert introspect_from(AGENT_HOST, api_client.as_user(gateway)).status_code == 200
