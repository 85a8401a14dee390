"""The OpenAPI document states what the server enforces, and the server refuses what the document
calls invalid (schemathesis runs every check against a live server in CI; these pin the findings)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(client):
    return client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()


@pytest.fixture
def as_admin(api_client, admin):
    return api_client.as_user(admin)


@pytest.mark.parametrize("kind", [{}, [], 1, None, True])
def test_an_event_kind_of_the_wrong_type_is_a_400_not_a_500(as_admin, kind):
    response = as_admin.post("/api/v1/events", {"events": [{"kind": kind, "token": "x"}]}, format="json")
    assert response.status_code == 400
    assert "events[0].kind" in response.json()


def test_a_null_decision_context_is_refused_as_the_schema_says(as_admin, gateway, api_client):
    as_gateway = api_client.as_user(gateway)
    body = {"token": "not-a-jwt", "scope": "github:read", "resource": "repo:a/b", "context": None}
    response = as_gateway.post("/api/v1/decisions", body, format="json")
    assert response.status_code == 400
    assert "context" in response.json()


def test_activity_events_say_agent_instance_and_envelope_may_be_null(schema):
    event = schema["components"]["schemas"]["ActivityEvent"]["properties"]
    for name in ("agent", "instance", "envelope"):
        assert event[name].get("nullable") is True, name


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("TRACE", "/api/v1/audit/export"),
        ("TRACE", "/api/v1/agents/"),
        ("PUT", "/api/v1/agents/"),
        ("DELETE", "/api/v1/audit/"),
        ("TRACE", "/api/v1/events"),
        ("PUT", "/api/v1/decisions"),
        ("TRACE", "/access/v1/evaluation"),
    ],
)
def test_an_undeclared_method_on_an_api_url_is_a_405_with_allow(api_client, owner, method, path):
    response = api_client.as_user(owner).generic(method, path)
    assert response.status_code == 405
    assert response["Allow"]
    assert method not in response["Allow"].split(", ")


def test_an_undeclared_method_is_a_405_even_before_signing_in(client):
    response = client.generic("TRACE", "/api/v1/audit/export")
    assert response.status_code == 405


def test_both_spellings_of_the_events_path_are_documented_with_both_methods(schema, as_admin):
    for path in ("/api/v1/events", "/api/v1/events/"):
        assert {"get", "post"} <= set(schema["paths"][path]), path
        allow = as_admin.options(path)["Allow"].split(", ")
        assert {"GET", "POST"} <= set(allow), path


def test_list_query_parameters_state_their_limits(schema):
    params = {p["name"]: p for p in schema["paths"]["/api/v1/agents/"]["get"]["parameters"]}
    assert params["page_size"]["schema"]["minimum"] == 1
    assert params["page"]["schema"]["minimum"] == 1
    for name, param in params.items():
        if param["schema"].get("type") == "string":
            assert param["schema"].get("minLength") == 1, name  # empty filters are refused


def test_every_operation_with_a_body_documents_415(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "requestBody" in operation:
                assert "415" in operation["responses"], (method, path)


def test_strict_request_bodies_say_they_take_no_other_fields(schema):
    for name in ("AgentCreateRequest", "EnvelopeRequestRequest", "EventBatchRequest", "IssuerCreateRequest"):
        component = schema["components"]["schemas"].get(name)
        if component is not None:
            assert component.get("additionalProperties") is False, name


def test_an_activity_since_with_a_far_utc_offset_is_read_not_a_500(as_admin):
    response = as_admin.get("/api/v1/events/", {"since": "1862-11-16T22:39:40+17:47"})
    assert response.status_code == 200
    assert as_admin.get("/api/v1/events/", {"since": "0001-01-01T00:00:00+01:00"}).status_code == 400


@pytest.mark.parametrize("name", ["agent", "since", "kind"])
def test_an_empty_activity_filter_is_refused_like_every_other_filter(as_admin, name):
    response = as_admin.get("/api/v1/events/", {name: ""})
    assert response.status_code == 400 and name in response.json()


def test_an_empty_cursor_is_refused(as_admin):
    assert as_admin.get("/api/v1/audit/", {"cursor": ""}).status_code == 400


def test_exception_scopes_state_their_pattern(schema):
    scopes = schema["components"]["schemas"]["ExceptionInRequest"]["properties"]["scopes"]
    assert scopes["minItems"] == 1 and "pattern" in scopes["items"]


@pytest.mark.parametrize("query", ["page=", "page=abc", "page=0", "page_size=", "page_size=0"])
def test_a_page_that_is_not_a_whole_number_is_a_400_as_the_schema_says(as_admin, query):
    answer = as_admin.get(f"/api/v1/agents/?{query}")
    assert answer.status_code == 400, answer.content
    assert query.split("=")[0] in answer.json()
