"""The OpenAPI document and the interactive docs, served without any CDN."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db

CONTRACT_PATHS = [
    "/api/v1/agents/",
    "/api/v1/agents/{slug}/",
    "/api/v1/agents/{slug}/pause",
    "/api/v1/agents/{slug}/resume",
    "/api/v1/agents/{slug}/retire",
    "/api/v1/agents/{slug}/instances/",
    "/api/v1/instances/",
    "/api/v1/instances/{id}/",
    "/api/v1/instances/{id}/clone",
    "/api/v1/instances/{id}/pause",
    "/api/v1/instances/{id}/resume",
    "/api/v1/instances/{id}/retire",
    "/api/v1/envelopes/",
    "/api/v1/envelopes/{id}/",
    "/api/v1/envelopes/{id}/approve",
    "/api/v1/envelopes/{id}/deny",
    "/api/v1/envelopes/{id}/revoke",
    "/api/v1/envelopes/{id}/complete",
    "/api/v1/envelopes/{id}/retask",
    "/api/v1/audit/",
    "/api/v1/audit/export",
    "/api/v1/audit/verify",
    "/api/v1/tokens/",
    "/api/v1/tokens/{id}/revoke",
]


def test_the_schema_validates_without_warnings():
    # --fail-on-warn turns any drf-spectacular warning into an error
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=io.StringIO(), stderr=io.StringIO())


def test_the_schema_is_openapi_3_and_names_every_contract_path(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert set(CONTRACT_PATHS) <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_every_operation_documents_its_refusals(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    for path, operations in schema["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        for method, operation in operations.items():
            assert "401" in operation["responses"], (method, path)


def test_the_docs_page_loads_its_assets_locally(client, settings):
    settings.MANDATE_API_DOCS_PUBLIC = True
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html and "cdn" not in html.lower() and "unpkg" not in html
