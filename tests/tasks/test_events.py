from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from identities.models import Instance
from tasks import services
from tasks.lifecycle import revoke_credentials
from tasks.models import ActivityEvent
from tests.helpers.factories import make_agent, make_envelope, make_instance

pytestmark = pytest.mark.django_db

POST_URL = "/api/v1/events"
# Reported events must be recent (MANDATE_EVENT_MAX_AGE_DAYS): an hour ago, to the second.
RECENT = (timezone.now() - timedelta(hours=1)).replace(microsecond=0)
LIST_URL = "/api/v1/events/"


def event(**over):
    return {
        "kind": "tool_call",
        "scope": "github:write",
        "resource": "repo:acme/api",
        "outcome": "success",
        "occurred_at": RECENT.isoformat(),
        "details": {"tool": "git push"},
        **over,
    }


@pytest.fixture
def gw(api_client, gateway):
    return api_client.as_user(gateway)


def agent_client(api_client, token):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


# --- reporting -------------------------------------------------------------------------------------


def test_an_agent_reports_with_its_own_credential_and_is_attributed(api_client, live_envelope, mint):
    minted = mint(live_envelope)
    response = agent_client(api_client, minted.token).post(
        POST_URL,
        {"events": [event(), event(kind="secret_access", scope="", resource="vault:db/password")]},
        format="json",
    )
    assert response.status_code == 202, response.content
    assert response.json() == {"accepted": 2}
    rows = list(ActivityEvent.objects.order_by("id"))
    assert [r.kind for r in rows] == ["tool_call", "secret_access"]
    first = rows[0]
    assert first.instance_id == live_envelope.instance_id and first.envelope_id == live_envelope.id
    assert first.agent_id == live_envelope.agent_id and first.jti == minted.credential.jti
    assert first.reported_by == live_envelope.instance.spiffe_id
    assert first.details == {"tool": "git push"} and first.outcome == "success"
    assert first.occurred_at == RECENT
    assert Instance.objects.get(pk=live_envelope.instance_id).last_seen_at is not None


def test_a_gateway_names_the_token_per_event(gw, live_envelope, mint, owner, admin):
    other = make_envelope(make_instance(make_agent(owner, slug="other-agent")))
    services.approve_envelope(envelope=other, actor=admin)
    token_a, token_b = mint(live_envelope).token, mint(other).token
    response = gw.post(
        POST_URL, {"events": [event(token=token_a), event(token=token_b), event(token=token_a)]}, format="json"
    )
    assert response.status_code == 202, response.content
    envelopes = list(ActivityEvent.objects.order_by("id").values_list("envelope_id", flat=True))
    assert envelopes == [live_envelope.id, other.id, live_envelope.id]
    assert set(ActivityEvent.objects.values_list("reported_by", flat=True)) == {"gate"}


def test_a_gateway_may_report_for_a_token_that_expired_or_was_revoked_since(gw, live_envelope, mint, admin):
    expired = mint(live_envelope, minutes=1, now=timezone.now() - timedelta(minutes=3)).token
    revoked = mint(live_envelope)
    with transaction.atomic():
        revoke_credentials(jtis=[revoked.credential.jti], actor=admin, reason="done")
    response = gw.post(POST_URL, {"events": [event(token=expired), event(token=revoked.token)]}, format="json")
    assert response.status_code == 202
    assert ActivityEvent.objects.count() == 2


def test_a_bad_event_rejects_the_whole_batch_and_stores_nothing(gw, live_envelope, mint):
    token = mint(live_envelope).token
    batch = [event(token=token) for _ in range(5)]
    batch[3]["occurred_at"] = "yesterday"
    response = gw.post(POST_URL, {"events": batch}, format="json")
    assert response.status_code == 400
    assert "events[3].occurred_at" in response.json()
    assert not ActivityEvent.objects.exists()


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"kind": "decision"}, "events[1].kind"),
        ({"kind": None}, "events[1].kind"),
        ({"scope": 5}, "events[1].scope"),
        ({"resource": "r" * 513}, "events[1].resource"),
        ({"outcome": ["ok"]}, "events[1].outcome"),
        ({"details": "text"}, "events[1].details"),
        ({"details": {"blob": "x" * 9000}}, "events[1].details"),
        ({"occurred_at": "2999-01-01T00:00:00Z"}, "events[1].occurred_at"),
        ({"surprise": 1}, "events[1].surprise"),
        ({"token": "forged.token.here"}, "events[1].token"),
        ({"token": None}, "events[1].token"),
    ],
)
def test_each_kind_of_bad_event_is_named(gw, live_envelope, mint, bad, field):
    token = mint(live_envelope).token
    batch = [event(token=token), {**event(token=token), **bad}]
    response = gw.post(POST_URL, {"events": batch}, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not ActivityEvent.objects.exists()


def test_a_tampered_token_in_a_gateway_batch_rejects_it(gw, live_envelope, mint):
    token = mint(live_envelope).token
    head, payload, sig = token.split(".")
    tampered = f"{head}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{sig}"
    response = gw.post(POST_URL, {"events": [event(token=token), event(token=tampered)]}, format="json")
    assert response.status_code == 400 and "events[1].token" in response.json()
    assert not ActivityEvent.objects.exists()


def test_an_agent_may_not_report_for_another_token(api_client, live_envelope, mint):
    minted = mint(live_envelope)
    response = agent_client(api_client, minted.token).post(
        POST_URL, {"events": [event(token=minted.token)]}, format="json"
    )
    assert response.status_code == 400 and "events[0].token" in response.json()


@pytest.mark.parametrize("body", [{}, {"events": []}, {"events": "x"}, [], {"events": [event()] * 1001}])
def test_an_empty_oversized_or_shapeless_batch_is_400(gw, body):
    response = gw.post(POST_URL, body, format="json")
    assert response.status_code == 400
    assert "events" in response.json()


def test_a_full_batch_of_a_thousand_is_stored(gw, live_envelope, mint):
    token = mint(live_envelope).token
    response = gw.post(POST_URL, {"events": [event(token=token)] * 1000}, format="json")
    assert response.status_code == 202 and response.json() == {"accepted": 1000}
    assert ActivityEvent.objects.count() == 1000


def test_an_expired_or_revoked_agent_credential_is_401(api_client, live_envelope, mint, admin):
    expired = mint(live_envelope, minutes=1, now=timezone.now() - timedelta(minutes=3)).token
    assert agent_client(api_client, expired).post(POST_URL, {"events": [event()]}, format="json").status_code == 401
    revoked = mint(live_envelope)
    with transaction.atomic():
        revoke_credentials(jtis=[revoked.credential.jti], actor=admin, reason="x")
    response = agent_client(api_client, revoked.token).post(POST_URL, {"events": [event()]}, format="json")
    assert response.status_code == 401
    assert agent_client(api_client, "garbage").post(POST_URL, {"events": [event()]}, format="json").status_code == 401
    assert not ActivityEvent.objects.exists()


def test_anonymous_is_401_and_owners_and_auditors_may_not_report(api_client, owner, auditor, live_envelope, mint):
    token = mint(live_envelope).token
    assert api_client.post(POST_URL, {"events": [event(token=token)]}, format="json").status_code == 401
    for user in (owner, auditor):
        response = api_client.as_user(user).post(POST_URL, {"events": [event(token=token)]}, format="json")
        assert response.status_code == 403


def test_an_agent_credential_cannot_read_the_record(api_client, live_envelope, mint):
    assert agent_client(api_client, mint(live_envelope).token).get(LIST_URL).status_code == 401


# --- reading ----------------------------------------------------------------------------------------


@pytest.fixture
def two_agents(owner, other_owner, admin, mint, gw):
    mine = make_envelope(make_instance(make_agent(owner, slug="mine")))
    theirs = make_envelope(make_instance(make_agent(other_owner, slug="theirs")))
    for envelope in (mine, theirs):
        services.approve_envelope(envelope=envelope, actor=admin)
    gw.post(
        POST_URL,
        {"events": [event(token=mint(mine).token), event(token=mint(theirs).token, kind="secret_access")]},
        format="json",
    )
    return mine, theirs


def test_owners_see_only_their_agents_events(api_client, owner, two_agents):
    mine, _ = two_agents
    results = api_client.as_user(owner).get(LIST_URL).json()["results"]
    assert [r["agent"] for r in results] == ["mine"]
    assert results[0]["envelope"] == str(mine.id) and results[0]["instance"] == str(mine.instance_id)


@pytest.mark.parametrize("who", ["admin", "auditor"])
def test_admins_and_auditors_see_every_event(api_client, two_agents, who, request):
    results = api_client.as_user(request.getfixturevalue(who)).get(LIST_URL).json()["results"]
    assert sorted(r["agent"] for r in results) == ["mine", "theirs"]


def test_an_owner_filtering_on_someone_elses_agent_sees_nothing(api_client, owner, two_agents):
    _, theirs = two_agents
    client = api_client.as_user(owner)
    assert client.get(LIST_URL, {"agent": "theirs"}).json()["results"] == []
    assert client.get(LIST_URL, {"envelope": str(theirs.id)}).json()["results"] == []


def test_the_list_filters(api_client, admin, two_agents):
    mine, _theirs = two_agents
    client = api_client.as_user(admin)
    assert [r["agent"] for r in client.get(LIST_URL, {"agent": "theirs"}).json()["results"]] == ["theirs"]
    assert [r["agent"] for r in client.get(LIST_URL, {"agent": str(mine.agent_id)}).json()["results"]] == ["mine"]
    assert [r["kind"] for r in client.get(LIST_URL, {"kind": "secret_access"}).json()["results"]] == ["secret_access"]
    assert len(client.get(LIST_URL, {"instance": str(mine.instance_id)}).json()["results"]) == 1
    assert len(client.get(LIST_URL, {"since": RECENT.isoformat()}).json()["results"]) == 2
    later = (RECENT + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    assert client.get(LIST_URL, {"since": later}).json()["results"] == []
    for bad in ({"envelope": "nope"}, {"kind": "dance"}, {"since": "soon"}):
        assert client.get(LIST_URL, bad).status_code == 400


def test_the_list_pages_by_cursor_with_a_constant_number_of_queries(
    api_client, admin, gw, live_envelope, mint, django_assert_max_num_queries
):
    token = mint(live_envelope).token
    gw.post(POST_URL, {"events": [event(token=token)] * 30}, format="json")
    client = api_client.as_user(admin)
    with django_assert_max_num_queries(4):
        page = client.get(LIST_URL, {"page_size": 25}).json()
    assert len(page["results"]) == 25 and page["next"]
    ids = [r["id"] for r in page["results"]]
    assert ids == sorted(ids, reverse=True)
    with django_assert_max_num_queries(4):
        rest = client.get(page["next"]).json()
    assert len(rest["results"]) == 5 and not rest["next"]


def test_anonymous_cannot_read_the_record(api_client):
    assert api_client.get(LIST_URL).status_code == 401


@pytest.mark.parametrize(
    ("raw_event", "field"),
    [
        ('"outcome": "ok\\u0000"', "events[0].outcome"),
        ('"resource": "repo:\\udc00"', "events[0].resource"),
        ('"details": {"k": "\\u0000"}', "events[0].details"),
        ('"details": {"k": "\\ud800"}', "events[0].details"),
    ],
)
def test_text_postgresql_cannot_store_is_400_not_500(gw, live_envelope, mint, raw_event, field):
    token = mint(live_envelope).token
    body = '{"events": [{"kind": "tool_call", "token": "' + token + '", ' + raw_event + "}]}"
    response = gw.post(POST_URL, body, content_type="application/json")
    assert response.status_code == 400
    assert field in response.json()
    assert not ActivityEvent.objects.exists()
