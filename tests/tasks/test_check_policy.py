"""A broken policy is refused with errors that name file and line: check_policy, start-up, checks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from tasks.checks import policy_is_valid
from tasks.policy import PolicyError, active_policy, check_policy_dir, reload_policy

DEFAULT = Path(settings.BASE_DIR) / "policy"


@pytest.fixture
def broken(tmp_path):
    """A copy of the default policy to break; returns a function that edits one file."""
    path = tmp_path / "policy"
    shutil.copytree(DEFAULT, path)

    def edit(name: str, old: str, new: str) -> Path:
        text = (path / name).read_text()
        assert old in text, f"{old!r} is not in {name}"
        (path / name).write_text(text.replace(old, new, 1))
        edit.line = text.count("\n", 0, text.index(old)) + 1  # where the edit begins
        return path

    edit.path = path
    return edit


def problems_of(path: Path) -> list[str]:
    policy, problems = check_policy_dir(path)
    assert policy is None
    return [str(p) for p in problems]


def line_of(path: Path, text: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


def test_the_shipped_policy_passes_check_policy():
    out = StringIO()
    call_command("check_policy", stdout=out)
    assert f"policy OK: version {active_policy().version}" in out.getvalue()


def test_a_toml_syntax_error_is_refused_with_its_line(broken):
    path = broken("risk.toml", 'max_envelope = "4h"', "max_envelope = 4h")
    err = StringIO()
    with pytest.raises(CommandError, match="1 problem"):
        call_command("check_policy", str(path), stderr=err)
    line = line_of(path / "risk.toml", "max_envelope = 4h")
    assert err.getvalue().startswith(f"risk.toml:{line}: not valid TOML: ")


def test_a_wrong_value_names_the_line_of_its_key(broken):
    path = broken("scopes.toml", 'risk = "medium"', 'risk = "severe"')
    line = line_of(path / "scopes.toml", 'risk = "severe"')
    assert problems_of(path) == [
        f"scopes.toml:{line}: scopes.\"github:write\".risk = 'severe' must be one of: low, medium, high"
    ]


@pytest.mark.parametrize(
    ("name", "old", "new", "expected"),
    [
        (
            "risk.toml",
            "required_approvals = 2",
            "required_approvals = 1",
            "high risk needs at least 2 different approvers",
        ),
        (
            "risk.toml",
            "required_approvals = 2",
            "required_approvals = 0",
            "levels.high.required_approvals = 0 must be a whole number from 1 to 5",
        ),
        (
            "risk.toml",
            'max_credential_ttl = "15m"',
            'max_credential_ttl = "1h"',
            "levels.low.max_credential_ttl must be between 1s and 15m",
        ),
        ("risk.toml", 'to = "high"', 'to = "critical"', "raise[3].to = 'critical' must be one of: medium, high"),
        (
            "risk.toml",
            "when = { max_actions_over = 1000 }",
            "when = { max_action_over = 1000 }",
            "unknown key 'raise[1].when.max_action_over'",
        ),
        (
            "auto_approve.toml",
            'max_risk = "low"',
            'max_risk = "medium"',
            "rule[0].max_risk = 'medium' must be one of: low",
        ),
        (
            "auto_approve.toml",
            'max_duration = "15m"',
            'max_duration = "fifteen minutes"',
            "rule[0].max_duration = 'fifteen minutes' is not a duration",
        ),
        (
            "lifecycle.toml",
            "revoke_after = 3",
            "revoke_after = -1",
            "drift.revoke_after = -1 must be a whole number from 0 to 1000",
        ),
        ("lifecycle.toml", "idle_limit =", "idle_limmit =", "unknown key 'sessions.idle_limmit'"),
        ("scopes.toml", '[scopes."github:read"]', '[scopes."GitHub read"]', "'GitHub read' is not a scope"),
    ],
)
def test_each_semantic_mistake_is_named_at_its_line(broken, name, old, new, expected):
    path = broken(name, old, new)
    [problem] = problems_of(path)
    line = broken.line
    assert problem.startswith(f"{name}:{line}: "), problem
    assert expected in problem


def test_a_cedar_syntax_error_is_refused_with_its_line(broken):
    path = broken(
        "guardrails.cedar",
        'resource.kind == "prod" }\nunless { context.request has ticket',
        'resource.kind == "prod" }\nunles { context.request has ticket',
    )
    [problem] = problems_of(path)
    assert (
        problem == f"guardrails.cedar:{line_of(path / 'guardrails.cedar', 'unles {')}: invalid policy condition: unles"
    )


def test_a_guardrail_that_does_not_fit_the_schema_is_refused_with_its_line(broken):
    path = broken(
        "guardrails.cedar",
        "context.request has change_window && context.request.change_window",
        "context.request has change_window && context.request.change_windw",
    )
    [problem] = problems_of(path)
    line = line_of(path / "guardrails.cedar", "change_windw")
    assert problem.startswith(f"guardrails.cedar:{line}: guardrail 'no-prod-deletes-outside-change-window': ")
    assert "change_windw" in problem


def test_a_broken_schema_is_refused_with_its_line(broken):
    path = broken("schema.cedarschema", "  owner: String,", "  owner: Strng,")
    [problem] = problems_of(path)
    assert (
        problem == f"schema.cedarschema:{line_of(path / 'schema.cedarschema', 'Strng')}: failed to resolve type: Strng"
    )


def test_a_schema_that_no_longer_describes_what_mandate_sends_is_refused(broken):
    path = broken("schema.cedarschema", "  spiffe_id: String,", "  spiffe_id: Long,")
    [problem] = problems_of(path)
    assert problem.startswith("schema.cedarschema: does not describe what Mandate sends")


def test_guardrails_need_a_schema(broken):
    (broken.path / "schema.cedarschema").unlink()
    assert problems_of(broken.path) == [
        "schema.cedarschema: guardrails.cedar needs the Cedar schema schema.cedarschema beside it"
    ]


def test_missing_and_unknown_files_are_named(broken):
    (broken.path / "scopes.toml").rename(broken.path / "scope.toml")
    assert sorted(problems_of(broken.path)) == [
        "scope.toml: not a policy file (expected: scopes.toml, risk.toml, auto_approve.toml, lifecycle.toml, "
        "guardrails.cedar, schema.cedarschema; documentation may be *.md)",
        "scopes.toml: missing: every policy needs this file",
    ]


def test_a_missing_directory_is_named(tmp_path):
    assert problems_of(tmp_path / "nowhere") == [f"{tmp_path / 'nowhere'}: the policy directory does not exist"]


def test_every_problem_is_reported_at_once(broken):
    broken("scopes.toml", 'risk = "low"', 'risk = "none"')
    broken("lifecycle.toml", "revoke_after = 3", 'revoke_after = "three"')
    broken("guardrails.cedar", "resource.kind", "resource.knd")
    assert [p.split(":")[0] for p in problems_of(broken.path)] == ["scopes.toml", "lifecycle.toml", "guardrails.cedar"]


def test_the_system_check_reports_a_broken_policy(broken, settings):
    broken("risk.toml", "required_approvals = 2", "required_approvals = 1")
    settings.MANDATE_POLICY_DIR = str(broken.path)
    [error] = policy_is_valid()
    assert error.id == "mandate.E001" and "risk.toml:" in error.msg


def test_reloading_a_broken_policy_keeps_the_running_one(broken, settings):
    settings.MANDATE_POLICY_DIR = str(broken.path)
    running = active_policy()
    broken("risk.toml", "required_approvals = 2", "required_approvals = 1")
    with pytest.raises(PolicyError, match=r"risk\.toml:\d+: high risk needs at least 2"):
        reload_policy()
    assert active_policy() is running


def test_a_process_refuses_to_start_on_a_broken_policy(broken):
    path = broken("lifecycle.toml", 'expire_after = "24h"', 'expire_after = "tomorrow"')
    env = {
        **os.environ,
        "MANDATE_TESTING": "1",
        "MANDATE_POLICY_DIR": str(path),
        "DJANGO_SETTINGS_MODULE": "console.settings",
    }
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    line = line_of(path / "lifecycle.toml", "tomorrow")
    assert f"lifecycle.toml:{line}: pending.expire_after = 'tomorrow' is not a duration" in result.stderr
    assert "PolicyError: the policy in" in result.stderr


def test_check_policy_itself_starts_on_a_broken_policy_to_report_it(broken):
    path = broken("lifecycle.toml", 'expire_after = "24h"', 'expire_after = "tomorrow"')
    env = {**os.environ, "MANDATE_TESTING": "1", "MANDATE_POLICY_DIR": str(path)}
    result = subprocess.run(
        [sys.executable, "manage.py", "check_policy"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("lifecycle.toml:")
    assert "Traceback" not in result.stderr
