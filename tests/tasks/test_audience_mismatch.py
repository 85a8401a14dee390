"""A credential meant for one service must not open another: a decision for a credential whose
``aud`` the asking gateway does not serve is denied ``audience_mismatch`` (right after
``token_revoked``), recorded like any denial, on /api/v1/decisions and every AuthZEN endpoint."""

from __future__ import annotations

import pytest

from accounts.services import set_gateway_audiences
from audit.services import Actor
from tasks.lifecycle import revoke_credentials
from tasks.models import ActivityEvent, TaskEnvelope

pytestmark = pytest.mark.django_db

URL = "/api/v1/decisions"
OTHER = "https://some-other-service.example"
MCP = "https://mcp.example.test/mcp"


@pytest.fixture
def gw(api_client, gateway):
    return api_client.as_user(gateway)


def ask(client, token, scope="github:write", resource="repo:acme/api"):
    response = client.post(URL, {"token": token, "scope": scope, "resource": resource}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def declare(gateway, *audiences):
    set_gateway_audiences(user=gateway, audiences=list(audiences), actor=Actor.system("test"))


def test_a_credential_for_another_audience_is_denied_and_recorded(gw, live_envelope, mint):
    token = mint(live_envelope, audience=OTHER).token
    answer = ask(gw, token)
    assert (answer["allow"], answer["reason"]) == (False, "audience_mismatch")
    assert OTHER in answer["detail"]
    event = ActivityEvent.objects.get(pk=answer["decision_id"])
    assert (event.allow, event.reason, event.envelope_id) == (False, "audience_mismatch", live_envelope.id)
    assert TaskEnvelope.objects.get(pk=live_envelope.pk).actions_used == 0
    assert answer["envelope"] == str(live_envelope.id)


def test_a_gateway_that_declares_none_serves_the_default_audience(gw, live_envelope, mint):
    assert ask(gw, mint(live_envelope).token)["reason"] == "ok"


def test_a_gateway_serves_exactly_the_audiences_it_declares(gw, gateway, live_envelope, mint):
    declare(gateway, MCP)
    assert ask(gw, mint(live_envelope, audience=MCP).token)["reason"] == "ok"
    assert ask(gw, mint(live_envelope).token)["reason"] == "audience_mismatch"  # the default is no longer served
    assert ask(gw, mint(live_envelope, audience=OTHER).token)["reason"] == "audience_mismatch"
    declare(gateway)  # none declared again: the default only, from the very next decision
    assert ask(gw, mint(live_envelope).token)["reason"] == "ok"
    assert ask(gw, mint(live_envelope, audience=MCP).token)["reason"] == "audience_mismatch"


def test_audience_is_checked_right_after_revocation(gw, live_envelope, mint):
    minted = mint(live_envelope, audience=OTHER)
    assert ask(gw, minted.token, scope="jira:read")["reason"] == "audience_mismatch"  # before scope
    revoke_credentials(envelope=live_envelope, actor=Actor.system("test"), reason="test")
    assert ask(gw, minted.token)["reason"] == "token_revoked"


def test_an_audience_mismatch_takes_as_few_queries_as_any_denial(
    gw, gateway, live_envelope, mint, django_assert_num_queries
):
    declare(gateway, MCP)
    token = mint(live_envelope, audience=OTHER).token
    ask(gw, token)
    with django_assert_num_queries(2):  # load by jti (with the caller's audiences), insert the record
        assert ask(gw, token)["reason"] == "audience_mismatch"
    served = mint(live_envelope, audience=MCP).token
    ask(gw, served)
    with django_assert_num_queries(5):  # as before: load, budget update, insert, savepoint pair
        assert ask(gw, served)["reason"] == "ok"


# --- AuthZEN -------------------------------------------------------------------------------------


def _subject(envelope, token):
    return {"type": "agent", "id": envelope.instance.spiffe_id, "properties": {"token": token}}


def _evaluation(envelope, token):
    return {
        "subject": _subject(envelope, token),
        "action": {"name": "github:write"},
        "resource": {"type": "repo", "id": "acme/api"},
    }


def test_authzen_evaluation_denies_an_audience_mismatch(gw, live_envelope, mint):
    token = mint(live_envelope, audience=OTHER).token
    answer = gw.post("/access/v1/evaluation", _evaluation(live_envelope, token), format="json").json()
    assert answer["decision"] is False and answer["context"]["reason"] == "audience_mismatch"
    assert ActivityEvent.objects.filter(reason="audience_mismatch").count() == 1


def test_authzen_evaluations_deny_an_audience_mismatch_item_by_item(gw, live_envelope, mint):
    wrong = mint(live_envelope, audience=OTHER).token
    right = mint(live_envelope).token
    body = {"evaluations": [_evaluation(live_envelope, wrong), _evaluation(live_envelope, right)]}
    answers = gw.post("/access/v1/evaluations", body, format="json").json()["evaluations"]
    assert [(a["decision"], a["context"]["reason"]) for a in answers] == [(False, "audience_mismatch"), (True, "ok")]
    assert TaskEnvelope.objects.get(pk=live_envelope.pk).actions_used == 1


def test_authzen_action_search_lists_nothing_for_an_audience_mismatch(gw, live_envelope, mint):
    token = mint(live_envelope, audience=OTHER).token
    body = {"subject": _subject(live_envelope, token), "resource": {"type": "repo", "id": "acme/api"}}
    response = gw.post("/access/v1/search/action", body, format="json")
    assert response.status_code == 200 and response.json()["results"] == []
    right = mint(live_envelope).token
    body = {"subject": _subject(live_envelope, right), "resource": {"type": "repo", "id": "acme/api"}}
    assert sorted(r["name"] for r in gw.post("/access/v1/search/action", body, format="json").json()["results"]) == [
        "github:read",
        "github:write",
    ]


def test_introspection_names_the_audience(gw, live_envelope, mint):
    token = mint(live_envelope, audience=MCP).token
    from urllib.parse import urlencode

    response = gw.post(
        "/oauth/introspect", urlencode({"token": token}), content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200 and response.json()["aud"] == MCP
