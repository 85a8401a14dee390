"""Gateways declare the audiences they serve: by ``manage.py add_user --audience`` and through
``/api/v1/gateways/{username}/audiences`` for identity admins; every change is audited."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from accounts.selectors import gateway_audiences
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

MCP = "https://mcp.example.test/mcp"
TOOLS = "https://tools.example.test"


def run(*args) -> str:
    out = StringIO()
    call_command("add_user", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_add_user_declares_a_gateways_audiences(monkeypatch):
    monkeypatch.delenv("MANDATE_PASSWORD", raising=False)
    output = run("gate", "--role", "gateway", "--audience", MCP, "--audience", TOOLS)
    gate = User.objects.get(username="gate")
    assert gateway_audiences(gate) == [MCP, TOOLS]
    assert MCP in output
    event = AuditEvent.objects.get(verb="gateway.audiences_changed")
    assert (event.before, event.after) == ({"audiences": []}, {"audiences": [MCP, TOOLS]})
    run("gate", "--role", "gateway")  # without --audience an existing gateway keeps its own
    assert gateway_audiences(gate) == [MCP, TOOLS]
    run("gate", "--role", "gateway", "--audience", TOOLS)
    assert gateway_audiences(gate) == [TOOLS]


def test_add_user_refuses_audiences_for_other_roles_and_malformed_ones():
    with pytest.raises(CommandError, match="gateway role"):
        run("olivia", "--role", "agent-owner", "--audience", MCP)
    with pytest.raises(CommandError, match="https"):
        run("gate", "--role", "gateway", "--audience", "http://mcp.example.test/")
    assert not User.objects.filter(username="gate").exists()  # nothing half-written


def test_an_admin_reads_and_sets_a_gateways_audiences(api_client, admin, gateway):
    client = api_client.as_user(admin)
    url = f"/api/v1/gateways/{gateway.username}/audiences"
    assert client.get(url).json() == {"username": "gate", "audiences": [], "serves": ["mandate"]}
    response = client.put(url, {"audiences": [MCP, MCP, "sts.amazonaws.com"]}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json() == {
        "username": "gate",
        "audiences": [MCP, "sts.amazonaws.com"],
        "serves": [MCP, "sts.amazonaws.com"],
    }
    event = AuditEvent.objects.get(verb="gateway.audiences_changed")
    assert event.actor == "ada" and event.after == {"audiences": [MCP, "sts.amazonaws.com"]}
    listed = client.get("/api/v1/gateways/").json()
    assert listed == [
        {"username": "gate", "audiences": [MCP, "sts.amazonaws.com"], "serves": [MCP, "sts.amazonaws.com"]}
    ]
    assert client.put(url, {"audiences": []}, format="json").json()["serves"] == ["mandate"]


@pytest.mark.parametrize(
    "body",
    [
        {"audiences": ["http://mcp.example.test/"]},
        {"audiences": ["has space"]},
        {"audiences": "https://mcp.example.test"},
        {"audiences": [f"https://s{i}.example.test" for i in range(21)]},
        {},
        {"audiences": [MCP], "extra": 1},
    ],
)
def test_malformed_audiences_are_a_clear_400_and_change_nothing(api_client, admin, gateway, body):
    response = api_client.as_user(admin).put(f"/api/v1/gateways/{gateway.username}/audiences", body, format="json")
    assert response.status_code == 400, response.json()
    assert gateway_audiences(gateway) == []
    assert not AuditEvent.objects.filter(verb="gateway.audiences_changed").exists()


def test_only_identity_admins_change_them_and_only_for_gateways(api_client, owner, auditor, gateway, admin):
    url = f"/api/v1/gateways/{gateway.username}/audiences"
    assert api_client.as_user(owner).get(url).status_code == 403
    assert api_client.as_user(gateway).put(url, {"audiences": [MCP]}, format="json").status_code == 403
    assert api_client.as_user(auditor).get(url).status_code == 200
    assert api_client.as_user(auditor).put(url, {"audiences": [MCP]}, format="json").status_code == 403
    assert api_client.as_user(admin).get(f"/api/v1/gateways/{owner.username}/audiences").status_code == 404
    assert gateway_audiences(gateway) == []


def test_the_schema_documents_the_gateway_audiences(api_client, admin):
    schema = api_client.as_user(admin).get("/api/schema/", {"format": "json"})
    text = schema.content.decode()
    assert "/api/v1/gateways/{username}/audiences" in text
    assert "audience_mismatch" in text and "audiences" in text
