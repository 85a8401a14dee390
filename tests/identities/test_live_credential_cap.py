"""The policy's cap on live credentials per instance per envelope (lifecycle.toml
``[credentials] max_live``, default 10): the next mint is refused until one ends."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from identities.models import Credential
from tasks.lifecycle import revoke_credential
from tasks.policy import active_policy, check_policy_dir
from tests.helpers.factories import make_agent, make_envelope, make_instance
from tests.helpers.oauth import (
    JWT_TYPE,
    TOKEN_EXCHANGE,
    approve,
    assertion_for,
    mint_in_parallel,
    post_token,
    token_form,
)

CAP_TEXT = "max_live = 10"


def cap_at(policy_dir, n: int) -> None:
    policy_dir.replace("lifecycle.toml", CAP_TEXT, f"max_live = {n}")


def refused_for_the_cap(response):
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"] == "invalid_grant"
    assert "live credentials" in body["error_description"] and "max_live" in body["error_description"]


@pytest.mark.django_db
def test_the_default_policy_caps_live_credentials_at_ten():
    assert active_policy().max_live_credentials == 10


@pytest.mark.django_db
def test_the_mint_after_the_cap_is_refused_with_a_clear_oauth_error(policy_dir, issue, instance, envelope):
    cap_at(policy_dir, 3)
    for _ in range(3):
        assert issue(instance, envelope).status_code == 200

    refused_for_the_cap(issue(instance, envelope))
    assert Credential.objects.filter(envelope=envelope).count() == 3


@pytest.mark.django_db
def test_a_revoked_credential_frees_its_place(policy_dir, issue, instance, envelope, owner):
    cap_at(policy_dir, 2)
    issue(instance, envelope), issue(instance, envelope)
    refused_for_the_cap(issue(instance, envelope))

    revoke_credential(credential=Credential.objects.filter(envelope=envelope).first(), actor=owner, reason="done")

    assert issue(instance, envelope).status_code == 200


@pytest.mark.django_db
def test_an_expired_credential_frees_its_place_before_the_sweep_marks_it(policy_dir, issue, instance, envelope):
    cap_at(policy_dir, 1)
    issue(instance, envelope)
    Credential.objects.filter(envelope=envelope).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert issue(instance, envelope).status_code == 200


@pytest.mark.django_db
def test_the_cap_counts_per_envelope(policy_dir, issue, instance, envelope, admin):
    cap_at(policy_dir, 1)
    other = approve(make_envelope(instance, intent="another task"), admin)
    assert issue(instance, envelope).status_code == 200

    assert issue(instance, other).status_code == 200


@pytest.mark.django_db
def test_delegated_credentials_count_against_the_receiving_instance(policy_dir, client, agent, admin):
    cap_at(policy_dir, 1)
    lead, helper = make_instance(agent, label="lead"), make_instance(agent, label="helper")
    envelope = approve(make_envelope(lead, may_delegate=True, delegation_depth=1), admin)
    subject = post_token(client, token_form(lead, envelope)).json()["access_token"]

    def exchange():
        form = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": subject,
            "subject_token_type": JWT_TYPE,
            "actor_token": assertion_for(helper),
            "actor_token_type": JWT_TYPE,
        }
        return post_token(client, form)

    assert exchange().status_code == 200  # the helper's first: the lead's credential is not its
    refused_for_the_cap(exchange())


@pytest.mark.django_db
def test_zero_turns_the_cap_off(policy_dir, issue, instance, envelope):
    cap_at(policy_dir, 0)
    assert all(issue(instance, envelope).status_code == 200 for _ in range(12))


@pytest.mark.parametrize("value", ["-1", "'ten'", "100001"])
def test_a_cap_that_is_not_a_sensible_number_is_a_policy_problem(policy_dir, value):
    (policy_dir.path / "lifecycle.toml").write_text(
        (policy_dir.path / "lifecycle.toml").read_text().replace(CAP_TEXT, f"max_live = {value}")
    )
    policy, problems = check_policy_dir(policy_dir.path)
    assert policy is None
    assert any("max_live" in str(p) for p in problems)


@pytest.mark.django_db
def test_the_policy_page_shows_the_cap(policy_dir, admin):
    cap_at(policy_dir, 7)
    client = Client()
    client.force_login(admin)
    page = client.get("/policy/").content.decode()
    assert "Live credentials per instance per envelope" in page and ">7<" in page


# --- under concurrency, on PostgreSQL --------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_mints_never_exceed_the_cap(policy_dir, owner, admin):
    cap_at(policy_dir, 5)
    instance = make_instance(make_agent(owner))
    envelope = approve(make_envelope(instance), admin)
    statuses = mint_in_parallel([token_form(instance, envelope) for _ in range(24)])

    assert sorted(statuses) == [200] * 5 + [400] * 19
    assert Credential.objects.filter(envelope=envelope, status=Credential.Status.ACTIVE).count() == 5
