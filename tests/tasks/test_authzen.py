"""The AuthZEN 1.0 decision point answers as POST /api/v1/decisions does: same checks, order,
reasons, budget and recording; responses in the specification's shapes."""

from __future__ import annotations

from datetime import timedelta

import jsonschema
import pytest
from django.db import transaction
from django.utils import timezone

from identities.models import Agent, Instance
from tasks import decisions, services
from tasks.lifecycle import revoke_credentials
from tasks.models import ActivityEvent, TaskEnvelope
from tests.helpers import authzen_shapes as shapes
from tests.helpers.factories import make_agent, make_envelope, make_instance

pytestmark = pytest.mark.django_db

EVALUATION = "/access/v1/evaluation"
EVALUATIONS = "/access/v1/evaluations"
SEARCH = "/access/v1/search/action"


@pytest.fixture
def gw(api_client, gateway):
    return api_client.as_user(gateway)


def subject(envelope, token):
    return {"type": "agent", "id": envelope.instance.spiffe_id, "properties": {"token": token}}


def evaluation(envelope, token, scope="github:write", resource=("repo", "acme/api"), **extra):
    return {
        "subject": subject(envelope, token),
        "action": {"name": scope},
        "resource": {"type": resource[0], "id": resource[1]},
        **extra,
    }


def evaluate(client, body):
    response = client.post(EVALUATION, body, format="json")
    assert response.status_code == 200, response.content
    answer = response.json()
    jsonschema.validate(answer, shapes.EVALUATION_RESPONSE)
    return answer


def evaluate_many(client, body):
    response = client.post(EVALUATIONS, body, format="json")
    assert response.status_code == 200, response.content
    answer = response.json()
    jsonschema.validate(answer, shapes.EVALUATIONS_RESPONSE)
    return answer["evaluations"]


def reasons(answers):
    return [a["context"].get("reason") for a in answers]


def used(envelope) -> int:
    return TaskEnvelope.objects.get(pk=envelope.pk).actions_used


class Forbidding:
    """Guardrails that forbid one scope (and record what they were asked)."""

    version = "test-guardrails"
    drift_revoke_after = 0

    def __init__(self, forbidden="github:write"):
        self.forbidden = forbidden
        self.asked = []

    def guardrails_allow(self, *, instance, agent, envelope, scope, resource, context, subjects=None):
        self.asked.append((scope, resource, context))
        return (False, "no pushes on Fridays") if scope == self.forbidden else (True, "")


# --- discovery -----------------------------------------------------------------------------------


def test_the_discovery_document_names_every_endpoint_with_absolute_urls(client, gw, live_envelope, mint):
    response = client.get("/.well-known/authzen-configuration")  # no credentials needed
    assert response.status_code == 200
    document = response.json()
    jsonschema.validate(document, shapes.CONFIGURATION)
    assert document == {
        "policy_decision_point": "http://testserver",
        "access_evaluation_endpoint": "http://testserver/access/v1/evaluation",
        "access_evaluations_endpoint": "http://testserver/access/v1/evaluations",
        "search_action_endpoint": "http://testserver/access/v1/search/action",
    }
    # A client that follows the document reaches a working decision point.
    path = document["access_evaluation_endpoint"].removeprefix("http://testserver")
    assert gw.post(path, evaluation(live_envelope, mint(live_envelope).token), format="json").json()["decision"]


def test_the_discovery_document_uses_the_public_url_when_one_is_set(client, settings):
    settings.MANDATE_PUBLIC_URL = "https://mandate.example.com"
    document = client.get("/.well-known/authzen-configuration").json()
    assert document["policy_decision_point"] == "https://mandate.example.com"
    assert document["search_action_endpoint"] == "https://mandate.example.com/access/v1/search/action"


# --- one evaluation --------------------------------------------------------------------------------


def test_an_allowed_evaluation_spends_one_action_and_is_recorded(gw, live_envelope, mint):
    minted = mint(live_envelope)
    answer = evaluate(gw, evaluation(live_envelope, minted.token, context={"ticket": "INV-7"}))
    assert answer["decision"] is True
    assert answer["context"]["reason"] == "ok" and answer["context"]["remaining_actions"] == 49
    assert used(live_envelope) == 1
    event = ActivityEvent.objects.get(id=answer["context"]["decision_id"])
    assert (event.kind, event.allow, event.reason) == ("decision", True, "ok")
    assert (event.scope, event.resource) == ("github:write", "repo:acme/api")
    assert event.jti == minted.credential.jti and event.envelope_id == live_envelope.id
    assert event.details == {"context": {"ticket": "INV-7"}} and event.reported_by == "gate"


def _revoke(envelope, minted, admin):
    with transaction.atomic():
        revoke_credentials(jtis=[minted.credential.jti], actor=admin, reason="leaked")


DENIALS = {
    "token_expired": (lambda env, minted, admin: None, {"expired": True}),
    "token_revoked": (_revoke, {}),
    "instance_inactive": (
        lambda env, minted, admin: Instance.objects.filter(pk=env.instance_id).update(status="paused"),
        {},
    ),
    "agent_inactive": (lambda env, minted, admin: Agent.objects.filter(pk=env.agent_id).update(status="paused"), {}),
    "envelope_inactive": (
        lambda env, minted, admin: TaskEnvelope.objects.filter(pk=env.pk).update(state="completed"),
        {},
    ),
    "scope_not_granted": (lambda env, minted, admin: None, {"scope": "jira:read"}),
    "resource_not_granted": (lambda env, minted, admin: None, {"resource": ("repo", "other/api")}),
    "budget_exhausted": (
        lambda env, minted, admin: TaskEnvelope.objects.filter(pk=env.pk).update(actions_used=env.max_actions),
        {},
    ),
}


@pytest.mark.parametrize("reason", sorted(DENIALS))
def test_each_denial_reason_through_the_evaluation_endpoint(gw, live_envelope, mint, admin, reason):
    arrange, call = DENIALS[reason]
    when = timezone.now() - timedelta(minutes=10) if call.get("expired") else None
    minted = mint(live_envelope, minutes=1, now=when) if when else mint(live_envelope)
    arrange(live_envelope, minted, admin)
    before = used(live_envelope)
    body = evaluation(
        live_envelope,
        minted.token,
        scope=call.get("scope", "github:write"),
        resource=call.get("resource", ("repo", "acme/api")),
    )
    answer = evaluate(gw, body)
    assert (answer["decision"], answer["context"]["reason"]) == (False, reason)
    assert ActivityEvent.objects.get(id=answer["context"]["decision_id"]).reason == reason
    assert used(live_envelope) == before


@pytest.mark.parametrize("reason", sorted(DENIALS))
def test_both_endpoints_give_the_same_reason(api_client, gateway, live_envelope, mint, admin, reason):
    """One implementation: /api/v1/decisions and /access/v1/evaluation agree on every reason."""
    arrange, call = DENIALS[reason]
    when = timezone.now() - timedelta(minutes=10) if call.get("expired") else None
    minted = mint(live_envelope, minutes=1, now=when) if when else mint(live_envelope)
    arrange(live_envelope, minted, admin)
    scope, resource = call.get("scope", "github:write"), call.get("resource", ("repo", "acme/api"))
    client = api_client.as_user(gateway)
    ours = client.post(
        "/api/v1/decisions",
        {"token": minted.token, "scope": scope, "resource": ":".join(resource)},
        format="json",
    ).json()
    theirs = evaluate(client, evaluation(live_envelope, minted.token, scope=scope, resource=resource))
    assert (theirs["decision"], theirs["context"]["reason"]) == (ours["allow"], ours["reason"])
    assert theirs["context"]["reason_admin"] == {"en": ours["detail"]}


def test_a_garbage_token_is_token_invalid(gw, live_envelope):
    answer = evaluate(gw, evaluation(live_envelope, "not-a-jwt"))
    assert (answer["decision"], answer["context"]["reason"]) == (False, "token_invalid")
    assert answer["context"]["remaining_actions"] is None


def test_a_guardrail_that_forbids_is_policy_forbids(gw, live_envelope, mint, monkeypatch):
    policy = Forbidding()
    monkeypatch.setattr(decisions, "active_policy", lambda: policy)
    answer = evaluate(gw, evaluation(live_envelope, mint(live_envelope).token, context={"day": "friday"}))
    assert (answer["decision"], answer["context"]["reason"]) == (False, "policy_forbids")
    assert answer["context"]["reason_admin"] == {"en": "no pushes on Fridays"}
    assert policy.asked == [("github:write", "repo:acme/api", {"day": "friday"})]
    assert used(live_envelope) == 0


def test_a_subject_that_is_not_the_credentials_sub_is_token_invalid(gw, live_envelope, mint, owner, admin):
    other = make_envelope(make_instance(make_agent(owner, slug="other-bot")))
    body = evaluation(live_envelope, mint(live_envelope).token)
    body["subject"]["id"] = other.instance.spiffe_id
    answer = evaluate(gw, body)
    assert (answer["decision"], answer["context"]["reason"]) == (False, "token_invalid")
    assert used(live_envelope) == 0
    event = ActivityEvent.objects.get(id=answer["context"]["decision_id"])
    assert event.reason == "token_invalid" and event.envelope_id is None  # not attributed to what it claims


# --- many evaluations ------------------------------------------------------------------------------


def test_defaults_apply_and_items_override_them(gw, live_envelope, mint):
    token = mint(live_envelope).token
    answers = evaluate_many(
        gw,
        {
            "subject": subject(live_envelope, token),
            "action": {"name": "github:read"},
            "resource": {"type": "repo", "id": "acme/api"},
            "context": {"ticket": "INV-7"},
            "evaluations": [
                {},
                {"action": {"name": "github:write"}},
                {"resource": {"type": "repo", "id": "other/api"}},
                {"action": {"name": "jira:read"}, "context": {"ticket": "OPS-1"}},
            ],
        },
    )
    assert reasons(answers) == ["ok", "ok", "resource_not_granted", "scope_not_granted"]
    events = [ActivityEvent.objects.get(id=a["context"]["decision_id"]) for a in answers]
    assert [(e.scope, e.resource) for e in events] == [
        ("github:read", "repo:acme/api"),
        ("github:write", "repo:acme/api"),
        ("github:read", "repo:other/api"),
        ("jira:read", "repo:acme/api"),
    ]
    assert [e.details["context"]["ticket"] for e in events] == ["INV-7", "INV-7", "INV-7", "OPS-1"]


def test_without_an_evaluations_array_it_is_one_evaluation(gw, live_envelope, mint):
    response = gw.post(EVALUATIONS, evaluation(live_envelope, mint(live_envelope).token), format="json")
    answer = response.json()
    jsonschema.validate(answer, shapes.EVALUATION_RESPONSE)
    assert answer["decision"] is True and used(live_envelope) == 1


def _mixed_batch(envelope, token, semantic):
    """allow, deny, allow, deny — in that order."""
    items = [
        {"action": {"name": "github:write"}},
        {"action": {"name": "jira:read"}},
        {"action": {"name": "github:read"}},
        {"resource": {"type": "repo", "id": "other/api"}},
    ]
    body = {
        "subject": subject(envelope, token),
        "action": {"name": "github:write"},
        "resource": {"type": "repo", "id": "acme/api"},
        "evaluations": items,
    }
    if semantic is not None:
        body["options"] = {"evaluations_semantic": semantic}
    return body


@pytest.mark.parametrize("semantic", [None, "execute_all"])
def test_execute_all_answers_every_item_in_request_order(gw, live_envelope, mint, semantic):
    answers = evaluate_many(gw, _mixed_batch(live_envelope, mint(live_envelope).token, semantic))
    assert [a["decision"] for a in answers] == [True, False, True, False]
    assert reasons(answers) == ["ok", "scope_not_granted", "ok", "resource_not_granted"]
    assert used(live_envelope) == 2
    assert ActivityEvent.objects.filter(kind="decision").count() == 4


def test_a_drift_limit_reached_mid_batch_ends_the_envelope_for_the_items_after_it(gw, live_envelope, mint):
    # The default policy revokes an envelope after 3 calls outside it.
    token = mint(live_envelope).token
    outside = {"action": {"name": "jira:read"}}
    body = _mixed_batch(live_envelope, token, None)
    body["evaluations"] = [outside, outside, {}, outside, {}]
    answers = evaluate_many(gw, body)
    assert reasons(answers) == [
        "scope_not_granted",
        "scope_not_granted",
        "ok",
        "scope_not_granted",
        "envelope_inactive",
    ]
    envelope = TaskEnvelope.objects.get(pk=live_envelope.pk)
    assert envelope.state == "revoked" and envelope.drift_count == 3 and envelope.actions_used == 1


def test_deny_on_first_deny_stops_at_the_first_denial_and_decides_nothing_after_it(gw, live_envelope, mint):
    answers = evaluate_many(gw, _mixed_batch(live_envelope, mint(live_envelope).token, "deny_on_first_deny"))
    assert [a["decision"] for a in answers] == [True, False]
    assert reasons(answers) == ["ok", "scope_not_granted"]
    assert used(live_envelope) == 1  # the third item, an allow, was never decided
    assert ActivityEvent.objects.filter(kind="decision").count() == 2


def test_permit_on_first_permit_stops_at_the_first_permit(gw, live_envelope, mint):
    token = mint(live_envelope).token
    body = _mixed_batch(live_envelope, token, "permit_on_first_permit")
    body["evaluations"] = body["evaluations"][1:]  # deny, allow, deny
    answers = evaluate_many(gw, body)
    assert [a["decision"] for a in answers] == [False, True]
    assert used(live_envelope) == 1
    assert ActivityEvent.objects.filter(kind="decision").count() == 2


def test_permit_on_first_permit_without_a_permit_answers_every_item(gw, live_envelope, mint):
    body = _mixed_batch(live_envelope, mint(live_envelope).token, "permit_on_first_permit")
    body["evaluations"] = [body["evaluations"][1], body["evaluations"][3]]
    assert [a["decision"] for a in evaluate_many(gw, body)] == [False, False]


def test_a_budget_that_runs_out_mid_batch_denies_the_later_items_in_order(gw, owner, admin, mint):
    envelope = make_envelope(make_instance(make_agent(owner)), scopes=("github:write", "github:read"), max_actions=2)
    services.approve_envelope(envelope=envelope, actor=admin)
    envelope.refresh_from_db()
    token = mint(envelope).token
    body = {
        "subject": subject(envelope, token),
        "resource": {"type": "repo", "id": "acme/api"},
        "evaluations": [
            {"action": {"name": "github:write"}},
            {"action": {"name": "jira:read"}},
            {"action": {"name": "github:read"}},
            {"action": {"name": "github:write"}},
        ],
    }
    answers = evaluate_many(gw, body)
    assert reasons(answers) == ["ok", "scope_not_granted", "ok", "budget_exhausted"]
    assert [a["context"]["remaining_actions"] for a in answers] == [1, 1, 0, 0]
    assert used(envelope) == 2


def test_a_malformed_item_is_denied_in_its_place_and_not_recorded(gw, live_envelope, mint):
    token = mint(live_envelope).token
    body = {
        "subject": subject(live_envelope, token),
        "resource": {"type": "repo", "id": "acme/api"},
        "evaluations": [
            {"action": {"name": "github:write"}},
            {"action": {"name": 7}},
            {"resource": "repo:acme/api", "action": {"name": "github:read"}},
            {"action": {"name": "github:read"}},
        ],
    }
    answers = evaluate_many(gw, body)
    assert [a["decision"] for a in answers] == [True, False, False, True]
    assert answers[1]["context"]["error"]["status"] == 400
    assert answers[1]["context"]["error"]["field"] == "evaluations[1].action.name"
    assert answers[2]["context"]["error"]["field"] == "evaluations[2].resource"
    assert "reason" not in answers[1]["context"]
    assert ActivityEvent.objects.filter(kind="decision").count() == 2
    assert used(live_envelope) == 2


def test_a_default_that_does_not_read_is_a_problem_of_each_item_that_leaves_it_out():
    from tasks import authzen

    batch = authzen.read_evaluations(
        {
            "subject": {"type": "agent", "id": "spiffe://x", "properties": {"token": "t"}},
            "action": {"name": ""},
            "context": {"ticket": "T"},
            "evaluations": [
                {"resource": {"type": "repo", "id": "a"}},
                {"action": {"name": "github:read"}, "resource": {"type": "repo", "id": "b"}},
                {"subject": {"type": "user"}, "action": {"name": "github:read"}, "resource": {"type": "repo"}},
                {"action": {"name": "github:read"}, "resource": {"type": "repo", "id": "d"}, "context": {}},
            ],
        }
    )
    assert [(item.field, item.message) for item in batch.items if isinstance(item, authzen.Malformed)] == [
        ("evaluations[0].action.name", "a string of 1 to 130 characters"),
        ("evaluations[2].subject.type", "'agent': this decision point answers for agents"),
    ]
    assert batch.items[1] == decisions.Call("t", "github:read", "repo:b", {"ticket": "T"}, "spiffe://x")
    assert batch.items[3] == decisions.Call("t", "github:read", "repo:d", {}, "spiffe://x")


def test_a_malformed_item_stops_a_deny_on_first_deny_batch(gw, live_envelope, mint):
    body = _mixed_batch(live_envelope, mint(live_envelope).token, "deny_on_first_deny")
    body["evaluations"][1] = {"action": {}}
    answers = evaluate_many(gw, body)
    assert [a["decision"] for a in answers] == [True, False]
    assert answers[1]["context"]["error"]["field"] == "evaluations[1].action.name"
    assert ActivityEvent.objects.filter(kind="decision").count() == 1


def test_every_decided_item_is_on_record_with_its_own_id(gw, live_envelope, mint):
    answers = evaluate_many(gw, _mixed_batch(live_envelope, mint(live_envelope).token, None))
    ids = [a["context"]["decision_id"] for a in answers]
    recorded = {str(e.id): e for e in ActivityEvent.objects.filter(kind="decision")}
    assert set(ids) == set(recorded) and len(set(ids)) == 4
    assert [recorded[i].allow for i in ids] == [a["decision"] for a in answers]
    assert [recorded[i].reason for i in ids] == reasons(answers)


def _two_agents_interleaved(gw, live_envelope, owner, admin, mint, *, items: int, **second_envelope):
    """A batch alternating between a second agent's envelope ("second-bot") and ``live_envelope``,
    second first: the answers' reasons, and the second envelope."""
    second = make_envelope(make_instance(make_agent(owner, slug="second-bot")), **second_envelope)
    services.approve_envelope(envelope=second, actor=admin)
    second.refresh_from_db()
    tokens = {second.pk: mint(second).token, live_envelope.pk: mint(live_envelope).token}
    order = [second if n % 2 == 0 else live_envelope for n in range(items)]
    answers = evaluate_many(
        gw,
        {
            "action": {"name": "github:write"},
            "resource": {"type": "repo", "id": "acme/api"},
            "evaluations": [{"subject": subject(envelope, tokens[envelope.pk])} for envelope in order],
        },
    )
    return reasons(answers), second


def test_items_may_name_different_envelopes(gw, live_envelope, owner, admin, mint):
    answered, second = _two_agents_interleaved(gw, live_envelope, owner, admin, mint, items=3, max_actions=1)
    assert answered == ["ok", "ok", "budget_exhausted"]
    assert (used(live_envelope), used(second)) == (1, 1)


def test_guardrails_answer_each_item_for_its_own_agent_in_a_mixed_batch(
    gw, live_envelope, owner, admin, mint, policy_dir
):
    """A batch remembers each subject's part of the guardrails' question once: items of two
    agents, interleaved, are each answered for their own agent."""
    policy_dir.write(
        "guardrails.cedar",
        '@id("envelope-allows")\npermit (principal, action == Action::"call", resource);\n'
        '@id("no-second-bot")\nforbid (principal, action == Action::"call", resource)\n'
        'when { context.agent.slug == "second-bot" };\n',
    )
    answered, second = _two_agents_interleaved(gw, live_envelope, owner, admin, mint, items=4)
    assert answered == ["policy_forbids", "ok", "policy_forbids", "ok"]
    assert (used(live_envelope), used(second)) == (2, 0)


def test_each_item_is_answered_for_its_own_credential_when_two_share_an_instance(gw, live_envelope, mint, admin):
    """A batch checks each credential's own standing once: two credentials of one instance and
    envelope, one revoked, interleaved, are each answered for themselves."""
    revoked, live = mint(live_envelope), mint(live_envelope)
    _revoke(live_envelope, revoked, admin)
    order = [revoked, live, revoked, live, live]
    answers = evaluate_many(
        gw,
        {
            "action": {"name": "github:write"},
            "resource": {"type": "repo", "id": "acme/api"},
            "evaluations": [{"subject": subject(live_envelope, minted.token)} for minted in order],
        },
    )
    assert reasons(answers) == ["token_revoked", "ok", "token_revoked", "ok", "ok"]
    assert used(live_envelope) == 3


def test_a_batch_of_one_envelope_takes_a_fixed_number_of_queries(
    gw, live_envelope, mint, django_assert_max_num_queries
):
    token = mint(live_envelope).token
    body = {
        "subject": subject(live_envelope, token),
        "action": {"name": "github:write"},
        "evaluations": [{"resource": {"type": "repo", "id": f"acme/r{n}"}} for n in range(20)],
    }
    evaluate_many(gw, body)  # warm the caches and last_seen_at
    # every credential with the asking API token's standing (1), lock the envelope (1), one
    # UPDATE, one INSERT, and the savepoint pair of the atomic block inside the test's transaction.
    with django_assert_max_num_queries(6):
        assert reasons(evaluate_many(gw, body)) == ["ok"] * 20
    assert used(live_envelope) == 40


def test_a_batchs_statements_are_planned_once_per_connection_and_never_again(gw, live_envelope, mint):
    """Planning a batch's statements cost PostgreSQL about a third of its work: the credentials'
    load alone was planned again for every batch (an ``= ANY`` list makes PostgreSQL prefer a plan of
    its own for each). Every statement of a batch is prepared on the connection, and each runs on
    its one generic plan from the first."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL prepares statements; SQLite plans each")
    token = mint(live_envelope).token
    for n in range(8):
        body = {
            "subject": subject(live_envelope, token),
            "action": {"name": "github:write"},
            "evaluations": [{"resource": {"type": "repo", "id": f"acme/r{k}"}} for k in range(n + 1)],
        }
        assert reasons(evaluate_many(gw, body)) == ["ok"] * (n + 1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")
        prepared = cursor.fetchall()

    def plans(*fragments):
        found = [(generic, custom) for text, generic, custom in prepared if all(f in text for f in fragments)]
        assert found, fragments
        return found

    for fragments in (
        ('FROM "identities_credential" c', "= ANY("),  # the credentials, with the asking token's standing
        ('FROM "tasks_taskenvelope" WHERE', "FOR UPDATE"),  # the envelopes, locked in key order
        ('UPDATE "tasks_taskenvelope" AS t',),  # their budgets
        ('INSERT INTO "tasks_activityevent"', "jsonb_to_recordset"),  # the record, every item
    ):
        assert all(custom == 0 and generic >= 1 for generic, custom in plans(*fragments)), fragments


# --- action search -------------------------------------------------------------------------------


def search(client, body):
    response = client.post(SEARCH, body, format="json")
    assert response.status_code == 200, response.content
    answer = response.json()
    jsonschema.validate(answer, shapes.SEARCH_ACTION_RESPONSE)
    return [r["name"] for r in answer["results"]]


def test_action_search_lists_the_scopes_granted_on_that_resource_and_spends_nothing(gw, live_envelope, mint):
    token = mint(live_envelope).token
    body = {"subject": subject(live_envelope, token), "resource": {"type": "repo", "id": "acme/api"}}
    assert sorted(search(gw, body)) == ["github:read", "github:write"]
    assert search(gw, {**body, "resource": {"type": "repo", "id": "other/api"}}) == []
    assert used(live_envelope) == 0
    assert not ActivityEvent.objects.exists()


def test_action_search_lists_only_what_the_credential_carries(gw, live_envelope, mint):
    token = mint(live_envelope, scopes=["github:read"]).token
    body = {"subject": subject(live_envelope, token), "resource": {"type": "repo", "id": "acme/api"}}
    assert search(gw, body) == ["github:read"]


def test_action_search_applies_guardrails_and_budget(gw, live_envelope, mint, monkeypatch):
    token = mint(live_envelope).token
    body = {"subject": subject(live_envelope, token), "resource": {"type": "repo", "id": "acme/api"}}
    policy = Forbidding("github:write")
    monkeypatch.setattr(decisions, "active_policy", lambda: policy)
    assert search(gw, {**body, "context": {"day": "friday"}}) == ["github:read"]
    assert ("github:write", "repo:acme/api", {"day": "friday"}) in policy.asked
    TaskEnvelope.objects.filter(pk=live_envelope.pk).update(actions_used=live_envelope.max_actions)
    assert search(gw, body) == []


def test_action_search_for_a_revoked_or_foreign_credential_is_empty(gw, live_envelope, mint, admin):
    minted = mint(live_envelope)
    body = {"subject": subject(live_envelope, minted.token), "resource": {"type": "repo", "id": "acme/api"}}
    body["subject"]["id"] = "spiffe://elsewhere/agent/x"
    assert search(gw, body) == []
    body["subject"]["id"] = live_envelope.instance.spiffe_id
    _revoke(live_envelope, minted, admin)
    assert search(gw, body) == []


# --- who may ask, and bad input ------------------------------------------------------------------


@pytest.mark.parametrize("path", [EVALUATION, EVALUATIONS, SEARCH])
def test_an_anonymous_caller_gets_401_and_owners_403(api_client, owner, live_envelope, mint, path):
    body = evaluation(live_envelope, mint(live_envelope).token)
    assert api_client.post(path, body, format="json").status_code == 401
    assert api_client.as_user(owner).post(path, body, format="json").status_code == 403
    assert not ActivityEvent.objects.exists()


def test_an_admin_may_ask(api_client, admin, live_envelope, mint):
    assert evaluate(api_client.as_user(admin), evaluation(live_envelope, mint(live_envelope).token))["decision"]


def _without(body, *path):
    *parents, last = path
    target = body
    for key in parents:
        target = target[key]
    del target[last]
    return body


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda b: _without(b, "subject"), "subject"),
        (lambda b: b["subject"].update(type="user"), "subject.type"),
        (lambda b: b["subject"].update(id=7), "subject.id"),
        (lambda b: _without(b, "subject", "properties", "token"), "subject.properties.token"),
        (lambda b: _without(b, "action"), "action"),
        (lambda b: b["action"].update(name=""), "action.name"),
        (lambda b: b["action"].update(name="x" * 131), "action.name"),
        (lambda b: b.update(resource="repo:acme/api"), "resource"),
        (lambda b: _without(b, "resource", "type"), "resource.type"),
        (lambda b: b.update(context=[]), "context"),
        (lambda b: b.update(context={"k": "x" * 5000}), "context"),
    ],
)
def test_a_malformed_evaluation_is_400_naming_the_field(gw, live_envelope, mint, change, field):
    body = evaluation(live_envelope, mint(live_envelope).token)
    change(body)
    response = gw.post(EVALUATION, body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not ActivityEvent.objects.exists()


@pytest.mark.parametrize("semantic", ["first_come", {}, ["execute_all"], 1])
def test_an_unknown_semantic_is_400(gw, live_envelope, mint, semantic):
    body = _mixed_batch(live_envelope, mint(live_envelope).token, semantic)
    response = gw.post(EVALUATIONS, body, format="json")
    assert response.status_code == 400 and "options.evaluations_semantic" in response.json()
    assert not ActivityEvent.objects.exists()


def test_a_malformed_batch_is_400_and_nothing_is_decided(gw, live_envelope, mint):
    body = _mixed_batch(live_envelope, mint(live_envelope).token, None)
    body["evaluations"] = [{}] * 101
    response = gw.post(EVALUATIONS, body, format="json")
    assert response.status_code == 400 and "evaluations" in response.json()
    assert gw.post(EVALUATIONS, [1], format="json").status_code == 400
    assert not ActivityEvent.objects.exists() and used(live_envelope) == 0


def test_a_body_over_the_cap_is_400_before_it_is_read(gw, live_envelope, mint):
    body = evaluation(live_envelope, mint(live_envelope).token)
    body["action"]["properties"] = {"padding": "x" * 20_000}
    response = gw.post(EVALUATION, body, format="json")
    assert response.status_code == 400 and "body" in response.json()
    assert not ActivityEvent.objects.exists()


def test_the_request_id_comes_back(gw, live_envelope, mint):
    response = gw.post(
        EVALUATION,
        evaluation(live_envelope, mint(live_envelope).token),
        format="json",
        HTTP_X_REQUEST_ID="bfe9eb29-ab87-4ca3-be83-a1d5d8305716",
    )
    assert response["X-Request-ID"] == "bfe9eb29-ab87-4ca3-be83-a1d5d8305716"


# --- served without DRF, described as before -------------------------------------------------------


def test_the_openapi_document_describes_the_decision_endpoints(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    for path in ("/api/v1/decisions", EVALUATION, EVALUATIONS, SEARCH):
        operation = schema["paths"][path]["post"]
        assert {"200", "400", "401", "403"} <= set(operation["responses"]), path
        assert operation["security"] == [{"bearerAuth": []}]
    assert "get" in schema["paths"]["/.well-known/authzen-configuration"]


@pytest.mark.parametrize("path", ["/api/v1/decisions", EVALUATION, EVALUATIONS, SEARCH])
def test_the_plain_endpoints_refuse_what_drf_refused(gw, api_client, path):
    response = gw.get(path)
    assert response.status_code == 405 and response["Allow"] == "POST" and "detail" in response.json()
    response = gw.post(path, "token=x", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415 and "detail" in response.json()
    response = gw.post(path, "{not json", content_type="application/json")
    assert response.status_code == 400 and "detail" in response.json()
    response = api_client.post(path, {}, format="json", HTTP_AUTHORIZATION="Bearer mdt_not-a-token")
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Bearer"
    assert not ActivityEvent.objects.exists()
