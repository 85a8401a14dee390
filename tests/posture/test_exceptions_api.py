import pytest

from posture.models import StandingException
from tests.helpers.factories import make_agent

pytestmark = pytest.mark.django_db
BODY = {
    "vendor": "Acme CRM",
    "justification": "webhook needs a static token",
    "scopes": ["github:read"],
    "compensating_controls": "IP allow-list",
    "duration_days": 30,
}


def test_an_owner_requests_with_a_secret_shown_once(api_client, owner):
    make_agent(owner)
    client = api_client.as_user(owner)

    response = client.post(
        "/api/v1/exceptions/", {**BODY, "agent": "invoice-triage", "issue_secret": True}, format="json"
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["secret"].startswith("mdx_") and body["status"] == "pending" and body["agent"] == "invoice-triage"
    again = client.get(f"/api/v1/exceptions/{body['id']}/").json()
    assert "secret" not in again and again["has_secret"] is True
    assert StandingException.objects.get().secret_digest != body["secret"]


def test_approve_renew_and_retire_over_the_api(api_client, owner, admin):
    owner_client, admin_client = api_client.as_user(owner), api_client.as_user(admin)
    exc_id = owner_client.post("/api/v1/exceptions/", BODY, format="json").json()["id"]

    assert owner_client.post(f"/api/v1/exceptions/{exc_id}/approve", {}, format="json").status_code == 403
    approved = admin_client.post(f"/api/v1/exceptions/{exc_id}/approve", {"comment": "ok"}, format="json")
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    assert admin_client.post(f"/api/v1/exceptions/{exc_id}/approve", {}, format="json").status_code == 409

    renewal = owner_client.post(f"/api/v1/exceptions/{exc_id}/renew", {"duration_days": 60}, format="json")
    assert renewal.status_code == 201 and renewal.json()["renews"] == exc_id

    recert = owner_client.post(f"/api/v1/exceptions/{exc_id}/recertify", {"comment": "still needed"}, format="json")
    assert recert.status_code == 200
    retired = owner_client.post(f"/api/v1/exceptions/{exc_id}/retire", {"reason": "done"}, format="json")
    assert retired.status_code == 200 and retired.json()["status"] == "retired"


def test_bad_input_is_a_400_naming_the_field(api_client, owner):
    client = api_client.as_user(owner)
    assert "duration_days" in client.post("/api/v1/exceptions/", {**BODY, "duration_days": 91}, format="json").json()
    assert "duration_days" in client.post("/api/v1/exceptions/", {**BODY, "duration_days": "30"}, format="json").json()
    assert "colour" in client.post("/api/v1/exceptions/", {**BODY, "colour": "red"}, format="json").json()
    assert "scopes" in client.post("/api/v1/exceptions/", {**BODY, "scopes": ["not a scope"]}, format="json").json()
    assert "agent" in client.post("/api/v1/exceptions/", {**BODY, "agent": "nobody"}, format="json").json()


def test_others_exceptions_are_404_and_gateways_403(api_client, owner, other_owner, gateway):
    exc_id = api_client.as_user(owner).post("/api/v1/exceptions/", BODY, format="json").json()["id"]
    other = api_client.as_user(other_owner)
    assert other.get(f"/api/v1/exceptions/{exc_id}/").status_code == 404
    assert other.post(f"/api/v1/exceptions/{exc_id}/retire", {}, format="json").status_code == 404
    assert other.get("/api/v1/exceptions/").json()["results"] == []
    assert api_client.as_user(gateway).get("/api/v1/exceptions/").status_code == 403
    assert api_client.get("/api/v1/exceptions/").status_code in (401, 403)


def test_the_schema_documents_the_exceptions_endpoints(api_client, admin):
    schema = api_client.as_user(admin).get("/api/schema/", HTTP_ACCEPT="application/json")
    text = schema.content.decode()
    assert "/api/v1/exceptions/{id}/approve" in text
