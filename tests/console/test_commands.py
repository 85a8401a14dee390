"""The set-up commands (add_user, create_api_token, verify_audit_chain) and the flow a new user
follows with curl: a token from the command, an agent, an instance, an envelope, an approval."""

from __future__ import annotations

import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import ApiToken
from accounts.roles import roles_of
from audit.models import AuditEvent
from tasks import lifecycle
from tests.helpers.factories import as_database_owner, make_agent, new_ed25519_key

pytestmark = pytest.mark.django_db

User = get_user_model()
GOOD_PASSWORD = "a long and unusual passphrase 42"


def _run(*args, **kwargs) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err, **kwargs)
    return out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def _no_password_in_env(monkeypatch):
    monkeypatch.delenv("MANDATE_PASSWORD", raising=False)


# --- add_user -------------------------------------------------------------------------------------


def test_add_user_creates_a_user_with_roles_and_the_password_from_the_environment(monkeypatch):
    monkeypatch.setenv("MANDATE_PASSWORD", GOOD_PASSWORD)
    _run("add_user", "root", "--role", "identity-admin", "--role", "auditor", "--email", "root@example.test")
    user = User.objects.get(username="root")
    assert user.check_password(GOOD_PASSWORD) and user.email == "root@example.test"
    assert roles_of(user) == {"identity-admin", "auditor"}
    change = AuditEvent.objects.get(verb="user.roles_changed")
    assert change.before == {"roles": []} and change.after == {"roles": ["auditor", "identity-admin"]}
    assert GOOD_PASSWORD not in json.dumps(list(AuditEvent.objects.values()), default=str)


def test_add_user_without_a_terminal_or_password_gives_an_unusable_password():
    _run("add_user", "bot", "--role", "agent-owner")
    assert not User.objects.get(username="bot").has_usable_password()


def test_add_user_asks_for_the_password_on_a_terminal(monkeypatch):
    answers = iter(["short", "short", GOOD_PASSWORD, GOOD_PASSWORD])
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    _, err = _run("add_user", "person", "--role", "agent-owner")
    assert User.objects.get(username="person").check_password(GOOD_PASSWORD)
    assert "too short" in err


def test_add_user_updates_roles_and_records_the_change(monkeypatch):
    _run("add_user", "sam", "--role", "agent-owner")
    out, _ = _run("add_user", "sam", "--role", "auditor", "--email", "sam@example.test")
    sam = User.objects.get(username="sam")
    assert roles_of(sam) == {"auditor"} and sam.email == "sam@example.test" and "updated" in out
    changes = AuditEvent.objects.filter(verb="user.roles_changed").order_by("id")
    assert [c.after["roles"] for c in changes] == [["agent-owner"], ["auditor"]]
    assert changes.last().before == {"roles": ["agent-owner"]}


def test_add_user_with_the_same_roles_records_no_change():
    _run("add_user", "sam", "--role", "agent-owner")
    out, _ = _run("add_user", "sam", "--role", "agent-owner")
    assert "unchanged" in out
    assert AuditEvent.objects.filter(verb="user.roles_changed").count() == 1


def test_add_user_refuses_an_unknown_role():
    with pytest.raises(CommandError):
        _run("add_user", "x", "--role", "superhero")
    assert not User.objects.filter(username="x").exists()


def test_add_user_refuses_a_weak_password(monkeypatch):
    monkeypatch.setenv("MANDATE_PASSWORD", "password")
    with pytest.raises(CommandError, match="password"):
        _run("add_user", "weak", "--role", "agent-owner")
    assert not User.objects.filter(username="weak").exists()


def test_add_user_refuses_a_malformed_username():
    with pytest.raises(CommandError, match="username"):
        _run("add_user", "no spaces allowed", "--role", "agent-owner")


# --- create_api_token -----------------------------------------------------------------------------


def test_create_api_token_prints_the_token_alone_on_its_last_line(owner):
    out, _ = _run("create_api_token", "olivia", "--name", "ci", "--expires-days", "7")
    secret = out.strip().splitlines()[-1]
    token = ApiToken.objects.get(digest=ApiToken.digest_of(secret))
    assert token.user == owner and token.name == "ci" and token.expires_at is not None
    event = AuditEvent.objects.get(verb="token.created")
    assert secret not in json.dumps([event.before, event.after, event.reason, event.target_label], default=str)


def test_create_api_token_refuses_an_unknown_user():
    with pytest.raises(CommandError, match="no user"):
        _run("create_api_token", "ghost")


def test_create_api_token_refuses_a_nonsense_expiry(owner):
    with pytest.raises(CommandError, match="expires_days"):
        _run("create_api_token", "olivia", "--expires-days", "0")


# --- verify_audit_chain ---------------------------------------------------------------------------


def test_verify_audit_chain_exits_0_when_intact(owner):
    make_agent(owner)
    out, _ = _run("verify_audit_chain")
    assert "intact" in out


def test_verify_audit_chain_exits_1_naming_the_first_bad_row(owner):
    agent = make_agent(owner)

    lifecycle.pause_agent(agent=agent, actor=owner)
    bad = AuditEvent.objects.get(verb="agent.created")
    with as_database_owner():
        AuditEvent.objects.filter(pk=bad.pk).update(after={"tampered": True})
    with pytest.raises(CommandError) as caught:
        _run("verify_audit_chain")
    assert caught.value.returncode == 1
    assert f"id={bad.id}" in str(caught.value)


def test_verify_audit_chain_exits_1_after_a_deleted_row(owner):
    agent = make_agent(owner)

    lifecycle.pause_agent(agent=agent, actor=owner)
    lifecycle.resume_agent(agent=agent, actor=owner)
    with as_database_owner():
        AuditEvent.objects.filter(verb="agent.paused").delete()
    with pytest.raises(CommandError) as caught:
        _run("verify_audit_chain")
    assert caught.value.returncode == 1 and "missing" in str(caught.value)


# --- the flow of a new user ------------------------------------------------------------------------


def test_a_token_from_create_api_token_drives_the_whole_flow_and_an_admin_approves(client, monkeypatch, settings):
    """What the README's curl walk-through does, with raw JSON bodies like curl sends them."""
    settings.MANDATE_TRUST_DOMAIN = "acme.example"
    monkeypatch.setenv("MANDATE_PASSWORD", GOOD_PASSWORD)
    _run("add_user", "olivia", "--role", "agent-owner")
    _run("add_user", "ada", "--role", "identity-admin")
    owner_token = _run("create_api_token", "olivia")[0].strip().splitlines()[-1]
    admin_token = _run("create_api_token", "ada")[0].strip().splitlines()[-1]

    def curl(method, path, token, body=None):
        response = client.generic(
            method,
            path,
            json.dumps(body) if body is not None else "",
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
        return response.status_code, response.json()

    code, agent = curl(
        "POST",
        "/api/v1/agents/",
        owner_token,
        {
            "slug": "invoice-triage",
            "name": "Invoice triage",
            "ceiling": ["github:read", "github:write"],
            "max_envelope_seconds": 3600,
        },
    )
    assert code == 201 and agent["owner"] == "olivia" and agent["ceiling"] == []
    code, agent = curl("POST", "/api/v1/agents/invoice-triage/pending-change/approve", admin_token, {"comment": "ok"})
    assert code == 200 and agent["ceiling"] == ["github:read", "github:write"]

    _, jwk = new_ed25519_key()
    code, instance = curl(
        "POST", "/api/v1/agents/invoice-triage/instances/", owner_token, {"public_jwk": jwk, "label": "worker-1"}
    )
    assert code == 201
    assert instance["spiffe_id"] == f"spiffe://acme.example/agent/invoice-triage/instance/{instance['id']}"

    code, envelope = curl(
        "POST",
        "/api/v1/envelopes/",
        owner_token,
        {
            "instance": instance["id"],
            "intent": "label this week's invoices",
            "scopes": ["github:write"],
            "resources": ["repo:acme/invoices"],
            "duration_seconds": 1800,
            "max_actions": 20,
        },
    )
    assert code == 201 and envelope["state"] == "pending"

    code, _ = curl("POST", f"/api/v1/envelopes/{envelope['id']}/approve", owner_token, {"comment": "me"})
    assert code == 403

    code, approved = curl("POST", f"/api/v1/envelopes/{envelope['id']}/approve", admin_token, {"comment": "ok"})
    assert code == 200 and approved["state"] == "approved" and approved["approvals"][0]["by"] == "ada"

    code, verified = curl("GET", "/api/v1/audit/verify", admin_token)
    assert verified["ok"] is True
    verbs = list(AuditEvent.objects.order_by("id").values_list("verb", flat=True))
    for verb in (
        "user.roles_changed",
        "token.created",
        "agent.created",
        "instance.registered",
        "envelope.requested",
        "envelope.approval_recorded",
        "envelope.approved",
    ):
        assert verb in verbs
