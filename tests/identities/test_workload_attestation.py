"""Workload tokens from trusted OpenID Connect issuers: instance attestation and authentication.

The issuer is real HTTP on 127.0.0.1 (discovery + JWKS), so key fetching, caching and rotation are
exercised end to end."""

from __future__ import annotations

import jwt
import pytest

from audit.models import AuditEvent
from core.errors import PermissionDenied, ValidationFailed
from core.oauth_errors import WorkloadTokenRejected
from identities import oidc
from identities.models import Instance, UsedAssertion
from identities.oidc import authenticate_workload_assertion, register_attested_instance
from tests.helpers.factories import make_agent, new_p256_key
from tests.helpers.oidc import LocalIssuer, new_signing_key

pytestmark = pytest.mark.django_db

K8S_SUB = "system:serviceaccount:billing:invoice-triage"


@pytest.fixture
def local_issuer():
    issuer = LocalIssuer("ES256")
    yield issuer
    issuer.close()


@pytest.fixture
def agent(owner):
    return make_agent(owner)


@pytest.fixture
def other_agent(owner):
    return make_agent(owner, slug="report-writer")


@pytest.fixture
def trusted(admin, local_issuer, agent, other_agent):
    return oidc.create_issuer(
        actor=admin,
        name="cluster-1",
        issuer=local_issuer.url,
        audience="mandate",
        rules=[
            {"agent": agent.slug, "claims": {"sub": "system:serviceaccount:billing:*"}},
            {"agent": other_agent.slug, "claims": {"sub": "system:serviceaccount:reports:writer"}},
        ],
    )


@pytest.fixture
def attested(trusted, local_issuer, agent, owner):
    return register_attested_instance(agent=agent, actor=owner, workload_token=local_issuer.token(), label="pod-a")


def refused(token, **kwargs) -> str:
    with pytest.raises(WorkloadTokenRejected) as caught:
        authenticate_workload_assertion(token, **kwargs)
    assert caught.value.error == "invalid_client"
    return caught.value.description


# --- registration ----------------------------------------------------------------------------------


def test_a_valid_token_for_the_right_agent_registers_an_attested_instance_without_a_key(attested, agent, local_issuer):
    assert attested.agent == agent
    assert attested.public_jwk is None and attested.key_thumbprint == ""
    assert attested.attested_issuer == local_issuer.url
    assert attested.attested_subject == K8S_SUB
    event = AuditEvent.objects.get(verb="instance.attested")
    assert event.after["subject"] == K8S_SUB and event.after["issuer"] == local_issuer.url


def test_an_attested_instance_may_also_register_its_own_key(trusted, local_issuer, agent, owner):
    _, jwk = new_p256_key()
    instance = register_attested_instance(agent=agent, actor=owner, workload_token=local_issuer.token(), public_jwk=jwk)
    assert instance.public_jwk["kty"] == "EC" and instance.attested_subject == K8S_SUB


def test_a_token_bound_to_another_agent_does_not_register_an_instance_of_this_one(
    trusted, local_issuer, other_agent, owner
):
    with pytest.raises(ValidationFailed) as caught:
        register_attested_instance(agent=other_agent, actor=owner, workload_token=local_issuer.token())
    assert caught.value.field == "workload_token"
    assert "invoice-triage" in caught.value.message
    assert not Instance.objects.exists()


def test_a_refused_registration_does_not_spend_the_token(trusted, local_issuer, other_agent, agent, owner):
    token = local_issuer.token()
    with pytest.raises(ValidationFailed):
        register_attested_instance(agent=other_agent, actor=owner, workload_token=token)
    assert register_attested_instance(agent=agent, actor=owner, workload_token=token).agent == agent


def test_an_outsider_cannot_register_an_attested_instance_of_someone_elses_agent(
    trusted, local_issuer, agent, other_owner
):
    with pytest.raises(PermissionDenied):
        register_attested_instance(agent=agent, actor=other_owner, workload_token=local_issuer.token())


def test_a_registration_token_cannot_be_replayed_to_register_a_second_instance(trusted, local_issuer, agent, owner):
    token = local_issuer.token()
    register_attested_instance(agent=agent, actor=owner, workload_token=token)
    with pytest.raises(ValidationFailed) as caught:
        register_attested_instance(agent=agent, actor=owner, workload_token=token)
    assert "used already" in caught.value.message
    assert Instance.objects.count() == 1


# --- authentication with a fresh workload token ----------------------------------------------------


def test_a_fresh_token_authenticates_the_attested_instance(attested, local_issuer):
    assert authenticate_workload_assertion(local_issuer.token()) == attested


def test_the_instance_hint_may_be_its_id_or_its_spiffe_id(attested, local_issuer):
    assert authenticate_workload_assertion(local_issuer.token(), instance_hint=str(attested.id)) == attested
    assert authenticate_workload_assertion(local_issuer.token(), instance_hint=attested.spiffe_id) == attested
    assert "no instance" in refused(local_issuer.token(), instance_hint="00000000-0000-0000-0000-000000000000")
    assert "not an instance id" in refused(local_issuer.token(), instance_hint="pod-a")


def test_replicas_sharing_a_subject_must_name_their_instance(attested, trusted, local_issuer, agent, owner):
    second = register_attested_instance(agent=agent, actor=owner, workload_token=local_issuer.token(), label="pod-b")
    assert "name yours" in refused(local_issuer.token())
    assert authenticate_workload_assertion(local_issuer.token(), instance_hint=str(second.id)) == second


def test_a_token_from_an_untrusted_issuer_is_refused(attested):
    stranger = LocalIssuer("ES256")
    try:
        assert "not trusted" in refused(stranger.token())
        # …even when it claims the trusted issuer's name but is signed by another key.
        forged = stranger.token(iss=attested.attested_issuer, kid="not-published", private=new_signing_key("ES256"))
        assert "does not publish" in refused(forged)
    finally:
        stranger.close()


def test_a_token_for_another_audience_is_refused(attested, local_issuer):
    assert "audience" in refused(local_issuer.token(aud="some-other-service"))


def test_a_token_with_mandate_among_several_audiences_is_accepted(attested, local_issuer):
    assert authenticate_workload_assertion(local_issuer.token(aud=["vault", "mandate"])) == attested


def test_an_expired_token_is_refused(attested, local_issuer):
    assert "expired" in refused(local_issuer.token(iat_offset=-400, lifetime=300))


def test_clock_skew_of_up_to_a_minute_is_tolerated_and_no_more(attested, local_issuer):
    assert authenticate_workload_assertion(local_issuer.token(iat_offset=-330, lifetime=300)) == attested
    assert authenticate_workload_assertion(local_issuer.token(iat_offset=30)) == attested
    assert "not valid yet" in refused(local_issuer.token(iat_offset=120))


def test_a_token_valid_for_days_is_refused(attested, local_issuer):
    assert "too long" in refused(local_issuer.token(lifetime=3 * 24 * 3600))


def test_a_token_that_matches_no_rule_is_refused(attested, local_issuer):
    assert "no rule" in refused(local_issuer.token(sub="system:serviceaccount:payments:robot"))


def test_a_token_matching_rules_of_two_agents_is_refused(admin, local_issuer, agent, other_agent, owner):
    oidc.create_issuer(
        actor=admin,
        name="too-wide",
        issuer=local_issuer.url,
        audience="mandate",
        rules=[
            {"agent": agent.slug, "claims": {"sub": "*"}},
            {"agent": other_agent.slug, "claims": {"sub": "system:*"}},
        ],
    )
    with pytest.raises(ValidationFailed) as caught:
        register_attested_instance(agent=agent, actor=owner, workload_token=local_issuer.token())
    assert "more than one agent" in caught.value.message


def test_a_token_signed_by_an_unknown_kid_is_refused_after_one_rate_limited_refetch(attested, local_issuer):
    fetches = local_issuer.jwks_fetches
    rogue = new_signing_key("ES256")
    for _ in range(5):
        assert "does not publish" in refused(local_issuer.token(kid="rotated-away", private=rogue))
    assert local_issuer.jwks_fetches <= fetches + 1


def test_a_replayed_token_is_refused(attested, local_issuer):
    token = local_issuer.token()
    assert authenticate_workload_assertion(token) == attested
    assert "used already" in refused(token)


def test_a_token_without_jti_is_replay_protected_by_its_hash(attested, local_issuer):
    token = local_issuer.token(jti=False)
    assert authenticate_workload_assertion(token) == attested
    assert "used already" in refused(token)
    assert UsedAssertion.objects.count() >= 2


def test_a_refused_authentication_does_not_spend_the_token(attested, local_issuer, agent, owner):
    from tasks.lifecycle import pause_instance, resume_instance

    token = local_issuer.token()
    pause_instance(instance=attested, actor=owner)
    assert "not active" in refused(token)
    resume_instance(instance=attested, actor=owner)
    assert authenticate_workload_assertion(token) == attested


def test_unsigned_and_hmac_tokens_are_refused(attested, local_issuer):
    claims = jwt.decode(local_issuer.token(), options={"verify_signature": False})
    unsigned = jwt.encode(claims, None, algorithm="none")
    assert "RS256, ES256 or EdDSA" in refused(unsigned)
    hmac = jwt.encode(
        claims, "a-shared-secret-of-enough-length-000", algorithm="HS256", headers={"kid": local_issuer.current_kid}
    )
    assert "RS256, ES256 or EdDSA" in refused(hmac)


def test_a_token_whose_algorithm_does_not_fit_the_key_is_refused(attested, local_issuer):
    rsa_key = new_signing_key("RS256")
    assert "does not fit" in refused(local_issuer.token(private=rsa_key, alg="RS256"))


def test_a_disabled_issuer_is_no_longer_trusted(attested, trusted, local_issuer, admin):
    oidc.disable_issuer(issuer=trusted, actor=admin)
    assert "not trusted" in refused(local_issuer.token())


def test_garbage_is_refused_not_crashed_on(attested):
    for junk in ["", "abc", "a.b.c", None, 12, "x" * 20000]:
        refused(junk)


# --- keys: cached, refreshed on rotation, pinned ---------------------------------------------------


def test_issuer_keys_are_cached_not_fetched_on_every_request(attested, local_issuer):
    fetches = local_issuer.jwks_fetches
    for _ in range(5):
        authenticate_workload_assertion(local_issuer.token())
    assert local_issuer.jwks_fetches == fetches


def test_keys_are_fetched_when_the_issuer_is_saved(trusted, local_issuer):
    trusted.refresh_from_db()
    assert local_issuer.jwks_fetches == 1 and trusted.keys_fetched_at and not trusted.keys_error
    assert {k["kid"] for k in trusted.fetched_jwks["keys"]} == {local_issuer.current_kid}


def test_issuer_key_rotation_is_picked_up_by_refetching_on_a_new_kid(attested, local_issuer):
    authenticate_workload_assertion(local_issuer.token())
    fetches = local_issuer.jwks_fetches
    local_issuer.rotate()
    assert authenticate_workload_assertion(local_issuer.token()) == attested
    assert authenticate_workload_assertion(local_issuer.token()) == attested
    assert local_issuer.jwks_fetches == fetches + 1
    assert AuditEvent.objects.filter(verb="issuer.keys_fetched").count() == 1


def test_the_background_job_refreshes_the_keys(attested, local_issuer):
    from identities.jobs import refresh_issuer_keys

    local_issuer.rotate()
    assert refresh_issuer_keys() == 1
    fetches = local_issuer.jwks_fetches
    assert authenticate_workload_assertion(local_issuer.token()) == attested
    assert local_issuer.jwks_fetches == fetches  # the request found the new key stored


def test_tokens_that_could_never_verify_trigger_no_fetch(attested, local_issuer):
    fetches = local_issuer.jwks_fetches
    unsigned = ".".join(local_issuer.token(kid="unknown-kid", private=new_signing_key("ES256")).split(".")[:2]) + "."
    expired = local_issuer.token(kid="unknown-kid", private=new_signing_key("ES256"), lifetime=-600)
    other_audience = local_issuer.token(kid="unknown-kid", private=new_signing_key("ES256"), aud="someone-else")
    no_agent = local_issuer.token(kid="unknown-kid", private=new_signing_key("ES256"), sub="nobody:at:all")
    for token in (unsigned, expired, other_audience, no_agent):
        refused(token)
    assert local_issuer.jwks_fetches == fetches


@pytest.mark.parametrize("alg", ["RS256", "EdDSA"])
def test_a_pinned_jwks_needs_no_fetch_and_other_key_types_work(admin, owner, agent, alg):
    issuer = LocalIssuer(alg)
    issuer.close()  # nothing to fetch from: the keys are pinned
    oidc.create_issuer(
        actor=admin,
        name=f"pinned-{alg}",
        issuer=issuer.url,
        audience="mandate",
        jwks=issuer.jwks(),
        rules=[{"agent": agent.slug, "claims": {"sub": K8S_SUB}}],
    )
    instance = register_attested_instance(agent=agent, actor=owner, workload_token=issuer.token())
    assert authenticate_workload_assertion(issuer.token()) == instance


def test_github_actions_style_rules_bind_repository_and_ref(admin, owner, agent, local_issuer):
    oidc.create_issuer(
        actor=admin,
        name="actions",
        issuer=local_issuer.url,
        audience="mandate",
        rules=[{"agent": agent.slug, "claims": {"repository": "acme/invoices", "ref": "refs/heads/main"}}],
    )
    gh = {"sub": "repo:acme/invoices:ref:refs/heads/main", "repository": "acme/invoices"}
    instance = register_attested_instance(
        agent=agent, actor=owner, workload_token=local_issuer.token(ref="refs/heads/main", **gh)
    )
    assert authenticate_workload_assertion(local_issuer.token(ref="refs/heads/main", **gh)) == instance
    assert "no rule" in refused(local_issuer.token(ref="refs/heads/feature", **gh))


# --- registration over REST ------------------------------------------------------------------------


def test_an_instance_registers_over_rest_with_only_a_workload_token(api_client, owner, agent, trusted, local_issuer):
    response = api_client.as_user(owner).post(
        f"/api/v1/agents/{agent.slug}/instances/",
        {"workload_token": local_issuer.token(), "label": "pod-a"},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["public_jwk"] is None
    instance = Instance.objects.get(pk=response.json()["id"])
    assert instance.attested_issuer == local_issuer.url and instance.attested_subject == K8S_SUB


def test_rest_registration_takes_a_key_and_a_workload_token_together(api_client, owner, agent, trusted, local_issuer):
    _, jwk = new_p256_key()
    response = api_client.as_user(owner).post(
        f"/api/v1/agents/{agent.slug}/instances/",
        {"workload_token": local_issuer.token(), "public_jwk": jwk},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["public_jwk"]["kty"] == "EC"


def test_rest_registration_needs_a_key_or_a_workload_token(api_client, owner, agent, trusted):
    response = api_client.as_user(owner).post(f"/api/v1/agents/{agent.slug}/instances/", {"label": "x"}, format="json")
    assert response.status_code == 400 and "public_jwk" in response.json()


def test_a_bad_workload_token_over_rest_is_a_400_naming_the_field(api_client, owner, agent, trusted, local_issuer):
    client = api_client.as_user(owner)
    for token in (
        local_issuer.token(aud="elsewhere"),
        "not-a-jwt",
        local_issuer.token(sub="system:serviceaccount:x:y"),
        12,
    ):
        response = client.post(f"/api/v1/agents/{agent.slug}/instances/", {"workload_token": token}, format="json")
        assert response.status_code == 400 and "workload_token" in response.json(), response.content
    assert not Instance.objects.exists()


def test_another_owner_cannot_register_an_attested_instance_over_rest(
    api_client, other_owner, agent, trusted, local_issuer
):
    response = api_client.as_user(other_owner).post(
        f"/api/v1/agents/{agent.slug}/instances/", {"workload_token": local_issuer.token()}, format="json"
    )
    assert response.status_code == 404
