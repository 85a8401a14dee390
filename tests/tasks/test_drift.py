import pytest

from audit.models import AuditEvent
from identities.models import Credential
from tasks import decisions
from tasks.models import ActivityEvent, TaskEnvelope

pytestmark = pytest.mark.django_db


@pytest.fixture
def gw(api_client, gateway):
    return api_client.as_user(gateway)


def ask(client, token, scope="github:write", resource="repo:acme/api"):
    return client.post(
        "/api/v1/decisions", {"token": token, "scope": scope, "resource": resource}, format="json"
    ).json()


def report(client, token, **over):
    body = {
        "events": [{"kind": "tool_call", "scope": "github:write", "resource": "repo:acme/api", "token": token, **over}]
    }
    response = client.post("/api/v1/events", body, format="json")
    assert response.status_code == 202, response.content


def test_a_call_for_a_scope_outside_the_envelope_is_flagged_as_drift(gw, live_envelope, mint):
    answer = ask(gw, mint(live_envelope).token, scope="jira:read")
    assert answer["reason"] == "scope_not_granted"
    assert ActivityEvent.objects.get(id=answer["decision_id"]).drift is True
    envelope = TaskEnvelope.objects.get(pk=live_envelope.pk)
    assert envelope.drift_count == 1 and envelope.last_drift_at is not None
    assert envelope.state == "approved"


def test_a_call_for_a_resource_outside_the_envelope_is_drift(gw, live_envelope, mint):
    answer = ask(gw, mint(live_envelope).token, resource="repo:other/api")
    assert ActivityEvent.objects.get(id=answer["decision_id"]).drift is True
    assert TaskEnvelope.objects.get(pk=live_envelope.pk).drift_count == 1


@pytest.mark.parametrize("reason_setup", ["budget", "ok"])
def test_other_outcomes_are_not_drift(gw, live_envelope, mint, reason_setup):
    if reason_setup == "budget":
        TaskEnvelope.objects.filter(pk=live_envelope.pk).update(actions_used=50)
    answer = ask(gw, mint(live_envelope).token)
    assert ActivityEvent.objects.get(id=answer["decision_id"]).drift is False
    assert TaskEnvelope.objects.get(pk=live_envelope.pk).drift_count == 0


def test_the_third_drift_revokes_the_envelope_and_its_credentials(gw, live_envelope, mint):
    minted = mint(live_envelope)
    ask(gw, minted.token, scope="jira:read")
    ask(gw, minted.token, resource="repo:other/x")
    assert TaskEnvelope.objects.get(pk=live_envelope.pk).state == "approved"
    third = ask(gw, minted.token, scope="jira:write")
    assert third["reason"] == "scope_not_granted"
    envelope = TaskEnvelope.objects.get(pk=live_envelope.pk)
    assert envelope.state == "revoked" and envelope.drift_count == 3
    assert "drift" in envelope.end_reason
    assert Credential.objects.get(jti=minted.credential.jti).status == "revoked"
    revocation = AuditEvent.objects.get(verb="envelope.revoked", target_id=str(envelope.id))
    assert (revocation.actor_type, revocation.actor) == ("policy", "drift-limit")
    # The next call is refused for the revoked credential.
    assert ask(gw, minted.token)["reason"] == "token_revoked"


def test_a_policy_may_revoke_at_the_first_drift(gw, live_envelope, mint, monkeypatch):
    class Strict:
        version = "strict"
        drift_revoke_after = 1

        def guardrails_allow(self, **call):
            return True, ""

    monkeypatch.setattr(decisions, "active_policy", lambda: Strict())
    ask(gw, mint(live_envelope).token, scope="jira:read")
    assert TaskEnvelope.objects.get(pk=live_envelope.pk).state == "revoked"


def test_a_policy_may_never_revoke_for_drift(gw, live_envelope, mint, monkeypatch):
    class Lenient:
        version = "lenient"
        drift_revoke_after = 0

        def guardrails_allow(self, **call):
            return True, ""

    monkeypatch.setattr(decisions, "active_policy", lambda: Lenient())
    token = mint(live_envelope).token
    for _ in range(4):
        ask(gw, token, scope="jira:read")
    envelope = TaskEnvelope.objects.get(pk=live_envelope.pk)
    assert envelope.state == "approved" and envelope.drift_count == 4


def test_a_reported_event_outside_the_envelope_is_drift(gw, live_envelope, mint):
    token = mint(live_envelope).token
    report(gw, token, scope="jira:write")
    report(gw, token, resource="repo:acme/api/deep")
    report(gw, token)  # inside: not drift
    assert list(ActivityEvent.objects.order_by("id").values_list("drift", flat=True)) == [True, True, False]
    assert TaskEnvelope.objects.get(pk=live_envelope.pk).drift_count == 2


def test_reported_drift_counts_toward_revocation(gw, live_envelope, mint):
    token = mint(live_envelope).token
    body = {"events": [{"kind": "privilege_escalation", "scope": "admin:all", "token": token}] * 3}
    assert gw.post("/api/v1/events", body, format="json").status_code == 202
    envelope = TaskEnvelope.objects.get(pk=live_envelope.pk)
    assert envelope.drift_count == 3 and envelope.state == "revoked"


def test_drift_on_an_ended_envelope_is_flagged_but_not_counted(gw, live_envelope, mint):
    token = mint(live_envelope).token
    TaskEnvelope.objects.filter(pk=live_envelope.pk).update(state="completed")
    report(gw, token, scope="jira:write")
    assert ActivityEvent.objects.get().drift is True
    assert TaskEnvelope.objects.get(pk=live_envelope.pk).drift_count == 0


def test_drift_shows_in_the_envelope_api(gw, api_client, owner, live_envelope, mint):
    ask(gw, mint(live_envelope).token, scope="jira:read")
    body = api_client.as_user(owner).get(f"/api/v1/envelopes/{live_envelope.id}/").json()
    assert body["drift_count"] == 1 and body["last_drift_at"]
