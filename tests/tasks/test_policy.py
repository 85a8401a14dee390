"""The default policy: risk classification, quorum, versioning and the Cedar guardrails."""

from __future__ import annotations

import pytest

from tasks.policy import Raiser, active_policy, load_policy, policy_summary, reload_policy
from tests.helpers.factories import make_agent, make_envelope, make_instance

LOW_SHORT = {
    "scopes": ["github:read"],
    "resources": ["repo:acme/app"],
    "duration_seconds": 900,
    "max_actions": 100,
    "may_delegate": False,
    "delegation_depth": 0,
}

# (what changes from a low-risk 15-minute read, expected risk, approvals, auto-approve rule)
CLASSIFICATION_TABLE = [
    ({}, "low", 0, "low-risk-short-task"),
    ({"scopes": ["github:read", "jira:read", "docs:read"]}, "low", 0, "low-risk-short-task"),
    ({"duration_seconds": 901}, "low", 1, None),
    ({"max_actions": 101}, "low", 1, None),
    ({"duration_seconds": 7200}, "low", 1, None),
    ({"duration_seconds": 7201}, "medium", 1, None),
    ({"max_actions": 1001}, "medium", 1, None),
    ({"may_delegate": True}, "medium", 1, None),
    ({"may_delegate": True, "delegation_depth": 1}, "medium", 1, None),
    ({"may_delegate": True, "delegation_depth": 2}, "high", 2, None),
    ({"resources": ["repo:acme/*"]}, "medium", 1, None),
    ({"resources": ["prod:db/customers"]}, "medium", 1, None),
    ({"resources": ["prod:*"]}, "high", 2, None),
    ({"resources": ["*"]}, "high", 2, None),
    # Every resource, or every resource of a type, is high however it is spelled.
    ({"resources": ["**"]}, "high", 2, None),
    ({"resources": ["**:**"]}, "high", 2, None),
    ({"resources": ["*:**"]}, "high", 2, None),
    ({"resources": ["repo:**"]}, "high", 2, None),
    ({"resources": ["repo:*"]}, "high", 2, None),
    ({"resources": ["prod:**"]}, "high", 2, None),
    ({"resources": ["repo:acme/**"]}, "medium", 1, None),
    ({"resources": ["repo:acme/app", "**"]}, "high", 2, None),
    ({"resources": []}, "low", 0, "low-risk-short-task"),
    ({"scopes": ["github:write"]}, "medium", 1, None),
    ({"scopes": ["github:read", "db:read"]}, "medium", 1, None),
    ({"scopes": ["secrets:read"]}, "high", 2, None),
    ({"scopes": ["deploy:production"]}, "high", 2, None),
    ({"scopes": ["github:read", "payments:refund"]}, "high", 2, None),
    ({"scopes": ["unknown:thing"]}, "high", 2, None),
    ({"scopes": ["github:*"]}, "high", 2, None),
]


@pytest.mark.parametrize(("change", "risk", "approvals", "rule"), CLASSIFICATION_TABLE)
def test_the_default_policy_classifies_requests(change, risk, approvals, rule):
    verdict = active_policy().classify(**{**LOW_SHORT, **change})
    assert (verdict.risk, verdict.required_approvals, verdict.auto_approve_rule) == (risk, approvals, rule)
    assert verdict.policy_version == active_policy().version


def test_each_risk_level_has_its_limits():
    policy = active_policy()
    assert {r: policy.risk_rules[r].required_approvals for r in ("low", "medium", "high")} == {
        "low": 1,
        "medium": 1,
        "high": 2,
    }
    assert policy.risk_rules["high"].max_envelope_seconds == 3600
    assert policy.max_credential_ttl_for("low") == 900
    assert policy.max_credential_ttl_for("high") == 300
    assert policy.credential_ttl_ceiling == 900
    assert (policy.pending_max_seconds, policy.idle_limit_seconds, policy.drift_revoke_after) == (86400, 900, 3)


def test_a_scope_missing_from_the_catalogue_is_high_risk_and_says_so():
    policy = active_policy()
    assert policy.risk_of_scope("github:read") == "low"
    assert policy.risk_of_scope("crm:export") == "high"
    verdict = policy.classify(**{**LOW_SHORT, "scopes": ["crm:export"]})
    assert "crm:export is not in the scope catalogue (high)" in verdict.reasons


def test_the_reasons_name_the_rules_that_raised_the_risk():
    verdict = active_policy().classify(**{**LOW_SHORT, "may_delegate": True, "delegation_depth": 2})
    assert [r.split(":")[0] for r in verdict.reasons] == ["delegation", "deep-delegation"]


def test_the_credential_ceiling_of_the_deployment_caps_the_policy(settings):
    settings.MANDATE_CREDENTIAL_MAX_TTL = 120
    assert active_policy().max_credential_ttl_for("low") == 120


@pytest.mark.django_db
def test_an_envelope_records_the_version_that_classified_it_and_a_change_moves_it(policy_dir, owner):
    instance = make_instance(make_agent(owner))
    before = make_envelope(instance)
    policy_dir.replace(
        "scopes.toml",
        '[scopes."github:write"]\ndescription = "Push branches, open and comment on '
        'pull requests and issues"\nrisk = "medium"',
        '[scopes."github:write"]\ndescription = "Push branches"\nrisk = "high"',
    )
    after = make_envelope(instance)
    assert before.policy_version != after.policy_version == active_policy().version
    assert (before.risk, after.risk) == ("medium", "high")
    assert after.required_approvals == 2


def test_a_comment_change_is_a_new_version_too(policy_dir):
    old = active_policy().version
    policy_dir.replace("lifecycle.toml", "# Time limits", "# Time limits (reviewed by security)")
    assert active_policy().version != old


def test_documentation_beside_the_policy_is_not_part_of_its_version(policy_dir):
    old = active_policy().version
    (policy_dir.path / "NOTES.md").write_text("why we chose these numbers")
    assert reload_policy().version == old


def test_the_same_files_elsewhere_have_the_same_version(policy_dir, settings):
    assert load_policy(policy_dir.path).version == load_policy(settings.BASE_DIR / "policy").version


def test_an_auto_approve_rule_may_narrow_to_scopes(policy_dir):
    policy_dir.replace("auto_approve.toml", "allow_delegation = false", 'allow_delegation = false\nscopes = ["docs:*"]')
    assert active_policy().classify(**{**LOW_SHORT, "scopes": ["docs:read"]}).auto_approve_rule
    assert active_policy().classify(**LOW_SHORT).auto_approve_rule is None


def test_without_auto_approve_rules_every_request_needs_a_person(policy_dir):
    (policy_dir.path / "auto_approve.toml").unlink()
    verdict = reload_policy().classify(**LOW_SHORT)
    assert (verdict.risk, verdict.required_approvals, verdict.auto_approve_rule) == ("low", 1, None)


# --- Cedar guardrails ----------------------------------------------------------------------------


@pytest.fixture
def secrets_instance(owner):
    agent = make_agent(owner, slug="db-janitor", ceiling=("secrets:read", "db:delete", "github:read"))
    return make_instance(agent)


def _ask(instance, *, scope, resource, context=None, envelope=None):
    envelope = envelope or _Envelope()
    return active_policy().guardrails_allow(
        instance=instance, agent=instance.agent, envelope=envelope, scope=scope, resource=resource, context=context
    )


class _Envelope:
    pk = "9f0c2a53-0000-4000-8000-000000000001"
    risk = "high"
    scopes = ["secrets:read", "db:delete"]
    resources = ["prod:*"]
    may_delegate = False
    delegation_depth = 0
    max_actions = 10
    actions_used = 0
    policy_version = "test"


@pytest.mark.django_db
def test_guardrails_allow_ordinary_calls(secrets_instance):
    assert _ask(secrets_instance, scope="github:read", resource="repo:acme/app") == (True, "")
    assert _ask(secrets_instance, scope="secrets:read", resource="staging:db-password") == (True, "")


@pytest.mark.django_db
def test_a_production_secret_needs_a_ticket(secrets_instance):
    allowed, detail = _ask(secrets_instance, scope="secrets:read", resource="prod:db-password")
    assert not allowed
    assert detail == "forbidden by prod-secrets-need-ticket (guardrails.cedar line 10)"
    assert _ask(
        secrets_instance, scope="secrets:read", resource="prod:db-password", context={"ticket": "CHG-1234"}
    ) == (True, "")
    assert not _ask(secrets_instance, scope="secrets:read", resource="prod:db-password", context={"ticket": ""})[0]


@pytest.mark.django_db
def test_production_deletes_need_a_change_window(secrets_instance):
    assert not _ask(secrets_instance, scope="db:delete", resource="prod:orders")[0]
    assert not _ask(secrets_instance, scope="db:delete", resource="prod:orders", context={"change_window": False})[0]
    assert _ask(secrets_instance, scope="db:delete", resource="prod:orders", context={"change_window": True})[0]
    assert _ask(secrets_instance, scope="db:delete", resource="staging:orders")[0]


@pytest.mark.django_db
def test_a_sub_agent_never_reads_production_secrets_even_with_a_ticket(secrets_instance):
    from identities.models import Instance

    secrets_instance.origin = Instance.Origin.SUBAGENT
    allowed, detail = _ask(
        secrets_instance, scope="secrets:read", resource="prod:db-password", context={"ticket": "CHG-1"}
    )
    assert not allowed and "no-secrets-for-spawned-instances" in detail


@pytest.mark.django_db
def test_caller_context_cannot_smuggle_cedar_entity_references(secrets_instance):
    context = {"ticket": {"__entity": {"type": "Tool", "id": "x"}}, "__extn": {"fn": "ip", "arg": "1.2.3.4"}}
    assert not _ask(secrets_instance, scope="secrets:read", resource="prod:db-password", context=context)[0]


@pytest.mark.django_db
def test_odd_caller_context_is_never_an_error(secrets_instance):
    context = {
        "ticket": "CHG-1",
        "n": 2**70,
        "f": 1.5,
        "none": None,
        "deep": {"a": {"b": {"c": {"d": {}}}}},
        "list": [1, "a", None],
    }
    assert _ask(secrets_instance, scope="secrets:read", resource="prod:x", context=context) == (True, "")
    assert _ask(secrets_instance, scope="github:read", resource="repo:x", context="not a dict") == (True, "")


@pytest.mark.django_db
def test_a_guardrail_that_fails_to_evaluate_denies(policy_dir, secrets_instance):
    # Valid against the schema, but overflows at run time: the forbid cannot be decided, so deny.
    policy_dir.write(
        "guardrails.cedar",
        (policy_dir.path / "guardrails.cedar").read_text()
        + (
            '\n@id("overflowing")\nforbid (principal, action == Action::"call", resource)\n'
            "when { context.envelope.max_actions * 9223372036854775807 > 0 };\n"
        ),
    )
    allowed, detail = _ask(secrets_instance, scope="github:read", resource="repo:acme/app")
    assert not allowed
    assert detail.startswith("guardrail could not be evaluated") and "overflowing" in detail


@pytest.mark.django_db
def test_with_no_permit_nothing_passes(policy_dir, secrets_instance):
    policy_dir.write("guardrails.cedar", '@id("only-forbid")\nforbid (principal, action, resource) when { false };\n')
    assert _ask(secrets_instance, scope="github:read", resource="repo:acme/app") == (
        False,
        "no guardrail permits this call",
    )


@pytest.mark.django_db
def test_without_a_guardrails_file_every_call_passes_the_guardrails(policy_dir, secrets_instance):
    (policy_dir.path / "guardrails.cedar").unlink()
    reload_policy()
    assert _ask(secrets_instance, scope="secrets:read", resource="prod:db-password") == (True, "")


@pytest.mark.django_db
def test_evaluating_the_guardrails_needs_no_query(secrets_instance, django_assert_num_queries):
    from identities.models import Instance

    instance = Instance.objects.select_related("agent").get(pk=secrets_instance.pk)
    with django_assert_num_queries(0):
        active_policy().guardrails_allow(
            instance=instance,
            agent=instance.agent,
            envelope=_Envelope(),
            scope="secrets:read",
            resource="prod:x",
            context={"ticket": "T"},
        )


# --- the policy page -----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["admin", "auditor"])
def test_admins_and_auditors_read_the_running_policy(client, request, who):
    client.force_login(request.getfixturevalue(who))
    response = client.get("/policy/")
    assert response.status_code == 200
    body = response.content.decode()
    assert active_policy().version in body
    assert "guardrails.cedar" in body and "prod-secrets-need-ticket" in body
    assert "None: the files on disk load cleanly." in body
    # Every limit in human units, never raw seconds like 28800.
    assert "A request waits for approval at most" in body and "An instance silent this long is stale" in body
    assert "<td>28800</td>" not in body and "<td>15 min</td>" in body


@pytest.mark.django_db
def test_an_owner_may_not_read_the_policy_page(client, owner):
    client.force_login(owner)
    assert client.get("/policy/").status_code == 403


@pytest.mark.django_db
def test_the_policy_page_shows_load_errors_of_the_files_on_disk(client, admin, policy_dir):
    running = active_policy().version
    (policy_dir.path / "lifecycle.toml").write_text("[drift]\nrevoke_after = -1\n")
    client.force_login(admin)
    body = client.get("/policy/").content.decode()
    assert running in body
    assert "lifecycle.toml:2" in body and "drift.revoke_after = -1" in body


def test_the_summary_lists_the_files_version_and_errors():
    summary = policy_summary()
    assert summary["version"] == active_policy().version == summary["disk_version"]
    assert {f["name"] for f in summary["files"]} == {
        "scopes.toml",
        "risk.toml",
        "auto_approve.toml",
        "lifecycle.toml",
        "guardrails.cedar",
        "schema.cedarschema",
    }
    assert summary["errors"] == []


@pytest.mark.django_db
def test_caller_context_of_the_wrong_type_denies_rather_than_passes(secrets_instance):
    # A number where the schema says String must not satisfy `ticket != ""`.
    allowed, detail = _ask(secrets_instance, scope="secrets:read", resource="prod:db-password", context={"ticket": 5})
    assert not allowed and detail.startswith("guardrail could not be evaluated")


@pytest.mark.django_db
def test_undeclared_caller_context_is_ignored(secrets_instance):
    assert _ask(
        secrets_instance, scope="github:read", resource="repo:acme/app", context={"trace_id": "abc", "ticket": "CHG-1"}
    ) == (True, "")


@pytest.mark.django_db
def test_a_guardrail_that_raises_denies_instead_of_failing_the_decision(secrets_instance):
    broken_envelope = _Envelope()
    broken_envelope.scopes = None  # not iterable: building the request raises
    allowed, detail = _ask(secrets_instance, scope="github:read", resource="repo:acme/app", envelope=broken_envelope)
    assert (allowed, detail) == (False, "guardrail could not be evaluated: TypeError")


# resource_like and scope_like speak the envelopes' resource patterns (tasks/resources.py), not
# shell globs: "*" stays within one "/"-separated segment, "**" crosses them, "?" and "[" are literal.
RESOURCE_LIKE_TABLE = [
    ("prod:*", "prod:db", True),
    ("prod:*", "prod:db/customers", False),
    ("prod:**", "prod:db/customers", True),
    ("repo:acme/*", "repo:acme/api", True),
    ("repo:acme/*", "repo:acme/api/x", False),
    ("repo:acme/?", "repo:acme/a", False),
    ("repo:acme/[ab]", "repo:acme/a", False),
    ("repo:acme/[ab]", "repo:acme/[ab]", True),
]


@pytest.mark.parametrize(("pattern", "resource", "matches"), RESOURCE_LIKE_TABLE)
def test_resource_like_uses_the_envelope_pattern_semantics(pattern, resource, matches):
    rule = Raiser(name="r", description="", to="high", when={"resource_like": [pattern]})
    call = {"scopes": ["docs:read"], "duration_seconds": 60, "max_actions": 1, "may_delegate": False}
    assert rule.matches(resources=[resource], delegation_depth=0, **call) is matches


@pytest.mark.parametrize(
    ("pattern", "scope", "matches"),
    [("github:*", "github:read", True), ("git*:read", "github:read", True), ("github:?ead", "github:read", False)],
)
def test_scope_like_uses_the_same_pattern_semantics(pattern, scope, matches):
    rule = Raiser(name="r", description="", to="high", when={"scope_like": [pattern]})
    call = {"resources": [], "duration_seconds": 60, "max_actions": 1, "may_delegate": False}
    assert rule.matches(scopes=[scope], delegation_depth=0, **call) is matches


# --- remembered answers --------------------------------------------------------------------------


@pytest.fixture
def cedar_calls(monkeypatch):
    import cedarpy

    from tasks import guardrails

    calls = []
    real = cedarpy.is_authorized

    def counting(*args, **kwargs):
        calls.append(args[0]["resource"]["id"])
        return real(*args, **kwargs)

    monkeypatch.setattr(guardrails.cedarpy, "is_authorized", counting)
    return calls


class _Spent(_Envelope):
    actions_used = 7


@pytest.mark.django_db
def test_the_same_question_is_answered_from_memory_but_each_new_one_by_cedar(secrets_instance, cedar_calls):
    assert _ask(secrets_instance, scope="secrets:read", resource="prod:db")[0] is False
    assert _ask(secrets_instance, scope="secrets:read", resource="prod:db")[0] is False
    # The budget spent is no input of the default guardrails, so it does not make a new question.
    assert _ask(secrets_instance, scope="secrets:read", resource="prod:db", envelope=_Spent())[0] is False
    assert [c for c in cedar_calls if c.startswith("prod:")] == ["prod:db"]
    # Anything else that a guardrail reads does.
    assert _ask(secrets_instance, scope="secrets:read", resource="prod:db", context={"ticket": "CHG-1"})[0] is True
    assert _ask(secrets_instance, scope="secrets:read", resource="prod:other")[0] is False
    assert [c for c in cedar_calls if c.startswith("prod:")] == ["prod:db", "prod:db", "prod:other"]


@pytest.mark.django_db
def test_a_guardrail_that_reads_the_budget_is_asked_again_as_it_is_spent(policy_dir, secrets_instance, cedar_calls):
    policy_dir.write(
        "guardrails.cedar",
        '@id("all")\npermit (principal, action, resource);\n'
        '@id("five-at-most")\nforbid (principal, action, resource) when { context.envelope.actions_used >= 5 };\n',
    )
    assert _ask(secrets_instance, scope="github:read", resource="repo:a")[0] is True
    assert _ask(secrets_instance, scope="github:read", resource="repo:a", envelope=_Spent())[0] is False
    assert _ask(secrets_instance, scope="github:read", resource="repo:a")[0] is True
    assert [c for c in cedar_calls if c == "repo:a"] == ["repo:a", "repo:a"]  # not the third


# Every value Mandate shows Cedar, a guardrail that reads it, the value it is asked with and another.
# (The guardrail forbids on the first value; with the second the call passes or is refused
# differently, so a remembered answer for the first would be the wrong one.)
CEDAR_SEES = [
    ("agent.pk", 'context.agent == Agent::"a-1"', "a-1", "a-2"),
    ("agent.slug", 'context.agent.slug == "janitor"', "janitor", "gardener"),
    ("agent.owner_id", 'context.agent.owner == "1"', 1, 2),
    ("agent.owner_id", 'context.agent.owner == "1"', 1, "1 "),
    ("agent.status", 'context.agent.status == "active"', "active", "paused"),
    ("instance.pk", 'principal == Instance::"i-1"', "i-1", "i-2"),
    ("instance.pk", 'principal.spiffe_id like "*/instance/i-1"', "i-1", "i-2"),
    ("instance.origin", 'principal.origin == "registered"', "registered", "clone"),
    ("instance.status", 'principal.status == "active"', "active", "suspended"),
    ("envelope.pk", 'context.envelope == Envelope::"e-1"', "e-1", "e-2"),
    ("envelope.risk", 'context.envelope.risk == "low"', "low", "high"),
    ("envelope.scopes", 'context.envelope.scopes.contains("github:read")', ["github:read"], ["github:write"]),
    ("envelope.scopes", 'context.envelope.scopes.contains("github:read")', ["github:read"], [1]),
    ("envelope.resources", 'context.envelope.resources.contains("repo:a")', ["repo:a"], ["repo:b"]),
    ("envelope.resources", 'context.envelope.resources.contains("repo:a")', ["repo:a"], ["repo:a", True]),
    ("envelope.may_delegate", "context.envelope.may_delegate", True, False),
    ("envelope.delegation_depth", "context.envelope.delegation_depth == 0", 0, 1),
    ("envelope.max_actions", "context.envelope.max_actions == 10", 10, 11),
    ("envelope.actions_used", "context.envelope.actions_used == 0", 0, 1),
    ("envelope.policy_version", 'context.envelope.policy_version == "v1"', "v1", "v2"),
    ("envelope.policy_version", 'context.envelope.policy_version == ""', None, "v2"),
    ("scope", 'context.scope == "github:read"', "github:read", "github:write"),
    ("scope", 'context.tool == Tool::"github"', "github:read", "gitlab:read"),
    ("scope", 'context.operation == "read"', "github:read", "github:list"),
    ("resource", 'resource == Resource::"repo:a"', "repo:a", "repo:b"),
    ("resource", 'resource.kind == "repo"', "repo:a", "doc:a"),
    ("context", 'context.request has ticket && context.request.ticket == "T-1"', {"ticket": "T-1"}, {"ticket": "T-2"}),
    ("context", "context.request has ticket", {"ticket": "T-1"}, {}),
    ("context", 'context.request has ticket && context.request.ticket == "1"', {"ticket": "1"}, {"ticket": 1}),
    ("context", "context.request has change_window", {"change_window": True}, {"change_window": 1}),
    ("context", "context.request has change_window", {"change_window": False}, {"change_window": 0}),
    ("context", "context.request has change_window", {"change_window": True}, {"change_window": 1.0}),
    ("context", 'context.request has reason && context.request.reason == "x"', {"reason": "x"}, {"reason": ["x"]}),
]


def _question(attribute: str, value) -> dict:
    from types import SimpleNamespace

    agent = SimpleNamespace(pk="a-1", slug="janitor", owner_id=1, status="active")
    instance = SimpleNamespace(pk="i-1", origin="registered", status="active")
    envelope = SimpleNamespace(
        pk="e-1",
        risk="low",
        scopes=["github:read"],
        resources=["repo:a"],
        may_delegate=True,
        delegation_depth=0,
        max_actions=10,
        actions_used=0,
        policy_version="v1",
    )
    question = {
        "agent": agent,
        "instance": instance,
        "envelope": envelope,
        "scope": "github:read",
        "resource": "repo:a",
        "context": {},
    }
    owner, _, name = attribute.partition(".")
    if name:
        setattr(question[owner], name, value)
    else:
        question[owner] = value
    return question


@pytest.mark.parametrize(("attribute", "reads", "first", "second"), CEDAR_SEES)
def test_a_remembered_answer_is_never_given_for_a_question_cedar_would_see_differently(
    cedar_calls, attribute, reads, first, second
):
    from tasks.guardrails import Guardrails

    schema = (_default_policy_dir() / "schema.cedarschema").read_text()
    policies = (
        '@id("all")\npermit (principal, action, resource);\n'
        f'@id("reads-it")\nforbid (principal, action, resource) when {{ {reads} }};\n'
    )
    for one, other in ((first, second), (second, first)):  # either answer remembered first
        guardrails = Guardrails(policies, schema)
        assert guardrails.reads_budget is (attribute == "envelope.actions_used")
        asked = len(cedar_calls)
        answer = guardrails.evaluate(**_question(attribute, one))
        assert guardrails.evaluate(**_question(attribute, one)) == answer
        assert len(cedar_calls) == asked + 1  # the second time from memory
        assert guardrails.evaluate(**_question(attribute, other)) != answer
        assert guardrails.evaluate(**_question(attribute, one)) == answer
        assert len(cedar_calls) == asked + 2  # each asked Cedar once
    fresh = Guardrails(policies, schema)
    assert fresh.evaluate(**_question(attribute, first))[1].startswith("forbidden by reads-it")


def _default_policy_dir():
    from pathlib import Path

    from django.conf import settings

    return Path(settings.BASE_DIR) / "policy"


def test_a_budget_no_guardrail_reads_is_no_part_of_the_question(cedar_calls):
    from tasks.guardrails import Guardrails

    schema = (_default_policy_dir() / "schema.cedarschema").read_text()
    guardrails = Guardrails('@id("all")\npermit (principal, action, resource);\n', schema)
    assert not guardrails.reads_budget
    assert guardrails.evaluate(**_question("envelope.actions_used", 0)) == (True, "")
    assert guardrails.evaluate(**_question("envelope.actions_used", 9)) == (True, "")
    # Nor a context key the schema does not declare (no guardrail may read it).
    assert guardrails.evaluate(**{**_question("envelope.actions_used", 9), "context": {"trace": "t"}}) == (True, "")
    assert len(cedar_calls) == 1


@pytest.mark.parametrize(
    ("attribute", "values"),
    [
        ("envelope.scopes", ([True], [1], [1.0])),
        ("envelope.resources", ([False], [0], [0.0])),
        ("context", ({"change_window": True}, {"change_window": 1}, {"change_window": 1.0})),
    ],
)
def test_values_python_finds_equal_but_cedar_does_not_are_each_asked(cedar_calls, attribute, values):
    from tasks.guardrails import Guardrails

    schema = (_default_policy_dir() / "schema.cedarschema").read_text()
    guardrails = Guardrails('@id("all")\npermit (principal, action, resource);\n', schema)
    for value in values:
        guardrails.evaluate(**_question(attribute, value))
    assert len(cedar_calls) == len(values)
