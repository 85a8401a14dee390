"""The policy interface the rest of Mandate uses: classify a request, name its version.

This first version is a built-in table; the policy-as-code loader replaces ``active_policy()``'s
source without changing this interface.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache

from django.conf import settings


@dataclass(frozen=True)
class RiskRule:
    required_approvals: int
    max_envelope_seconds: int
    max_credential_ttl: int


@dataclass(frozen=True)
class Classification:
    risk: str
    required_approvals: int
    auto_approve_rule: str | None
    policy_version: str
    max_envelope_seconds: int
    max_credential_ttl: int
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class Policy:
    version: str
    scope_risk: dict[str, str]
    risk_rules: dict[str, RiskRule]
    idle_limit_seconds: int = 900
    pending_max_seconds: int = 24 * 3600
    drift_revoke_after: int = 3
    scope_descriptions: dict[str, str] = field(default_factory=dict)

    def risk_of_scope(self, scope: str) -> str:
        return self.scope_risk.get(scope, "high")

    def classify(self, *, scopes, resources, duration_seconds, max_actions, may_delegate,
                 delegation_depth) -> Classification:
        order = ["low", "medium", "high"]
        risk = max((self.risk_of_scope(s) for s in scopes), key=order.index, default="low")
        reasons = []
        if may_delegate and risk == "low":
            risk, reasons = "medium", ["delegation"]
        if any("*" in r for r in resources) and risk == "low":
            risk, reasons = "medium", ["wildcard resource"]
        rule = self.risk_rules[risk]
        auto = None
        if (risk == "low" and duration_seconds <= 900 and max_actions <= 100 and not may_delegate):
            auto = "low-risk-short-task"
        return Classification(risk, 0 if auto else max(rule.required_approvals, 1), auto, self.version,
                              rule.max_envelope_seconds, rule.max_credential_ttl, tuple(reasons))


def _builtin() -> Policy:
    scope_risk = {"github:read": "low", "jira:read": "low", "github:write": "medium", "jira:write": "medium"}
    ceiling = settings.MANDATE_CREDENTIAL_MAX_TTL
    rules = {
        "low": RiskRule(1, 8 * 3600, ceiling),
        "medium": RiskRule(1, 4 * 3600, ceiling),
        "high": RiskRule(2, 3600, min(ceiling, 300)),
    }
    content = json.dumps({"scopes": scope_risk, "rules": {k: v.__dict__ for k, v in rules.items()}}, sort_keys=True)
    return Policy(hashlib.sha256(content.encode()).hexdigest()[:16], scope_risk, rules)


@lru_cache(maxsize=1)
def active_policy() -> Policy:
    return _builtin()
