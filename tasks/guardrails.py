"""Cedar guardrails: loaded and validated once per process, evaluated on every tool call.

The policy set and schema are parsed once into cedarpy handles. A call's question is five small
entities (agent, instance, envelope, tool, resource) built from model fields already in memory — no
database query — and Cedar answers it; a question asked before is answered from memory. Anything
but a clean Allow denies: a guardrail that errors while evaluating fails closed, even when a
``permit`` matched.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import cedarpy

from tasks.policy_files import PolicyProblem, cedar_statements, locate_in, token_line

GUARDRAILS_FILE = "guardrails.cedar"
SCHEMA_FILE = "schema.cedarschema"
ACTION = {"type": "Action", "id": "call"}

# Caller context is data from a gateway: bounded, and never able to smuggle Cedar entity or
# extension references (``__entity``/``__extn`` keys) into the request.
_MAX_CONTEXT_DEPTH = 4
_MAX_CONTEXT_ITEMS = 64
_MAX_REMEMBERED = 8192  # remembered answers per policy version (each key is a few hundred bytes)


@dataclass(frozen=True)
class GuardrailPolicy:
    policy_id: str  # Cedar's positional id: policy0, policy1, …
    name: str  # its @id annotation, or the positional id
    line: int


class Guardrails:
    def __init__(self, policies_text: str, schema_text: str):
        self.policies_text = policies_text
        self.schema_text = schema_text
        self.policy_set = cedarpy.PolicySet.from_str(policies_text)
        self.schema = cedarpy.Schema.from_str(schema_text)
        self.statements = cedar_statements(policies_text)
        self.context_keys = caller_context_keys(schema_text)
        self.by_id: dict[str, GuardrailPolicy] = {}
        # Cedar's answer is a pure function of (policies, schema, request, entities), and gateways
        # ask the same question many times: remember answers, bounded, for the life of this policy
        # version, keyed by every value ``request`` puts in front of Cedar (``_key``). The
        # envelope's actions_used changes on every allowed call, so when no policy can read it (the
        # name appears nowhere in the text) it is left out of the key.
        self.reads_budget = "actions_used" in policies_text
        self._answers: dict[tuple, tuple[bool, str]] = {}
        for index, statement in enumerate(self.statements):
            text = policies_text[statement.start : statement.end]
            name = _annotation_id(text) or f"policy{index}"
            self.by_id[f"policy{index}"] = GuardrailPolicy(f"policy{index}", name, statement.line)

    def describe(self, policy_id: str) -> str:
        policy = self.by_id.get(policy_id)
        if policy is None:
            return policy_id
        return f"{policy.name} ({GUARDRAILS_FILE} line {policy.line})"

    def request(self, *, instance, agent, envelope, scope: str, resource: str, context) -> tuple[dict, list]:
        """Cedar's request and entities for this call."""
        return self._request(
            instance=instance,
            agent=agent,
            envelope=envelope,
            scope=scope,
            resource=resource,
            cleaned=clean_context(context, keys=self.context_keys),
        )

    def _request(self, *, instance, agent, envelope, scope: str, resource: str, cleaned: dict) -> tuple[dict, list]:
        tool, _, operation = scope.partition(":")
        agent_uid = {"type": "Agent", "id": str(agent.pk)}
        instance_uid = {"type": "Instance", "id": str(instance.pk)}
        envelope_uid = {"type": "Envelope", "id": str(envelope.pk)}
        tool_uid = {"type": "Tool", "id": tool}
        resource_uid = {"type": "Resource", "id": resource}
        from identities.models import spiffe_id_for

        entities = [
            {
                "uid": agent_uid,
                "parents": [],
                "attrs": {"slug": agent.slug, "owner": str(agent.owner_id), "status": agent.status},
            },
            {
                "uid": instance_uid,
                "parents": [agent_uid],
                "attrs": {
                    "agent": {"__entity": agent_uid},
                    "origin": instance.origin,
                    "status": instance.status,
                    "spiffe_id": spiffe_id_for(agent.slug, instance.pk),
                },
            },
            {
                "uid": envelope_uid,
                "parents": [],
                "attrs": {
                    "risk": envelope.risk,
                    "scopes": list(envelope.scopes),
                    "resources": list(envelope.resources),
                    "may_delegate": bool(envelope.may_delegate),
                    "delegation_depth": int(envelope.delegation_depth),
                    "max_actions": int(envelope.max_actions),
                    "actions_used": int(envelope.actions_used),
                    "policy_version": envelope.policy_version or "",
                },
            },
            {"uid": tool_uid, "parents": [], "attrs": {}},
            {
                "uid": resource_uid,
                "parents": [],
                "attrs": {"name": resource, "kind": resource.partition(":")[0] if ":" in resource else ""},
            },
        ]
        request = {
            "principal": instance_uid,
            "action": ACTION,
            "resource": resource_uid,
            "context": {
                "scope": scope,
                "tool": {"__entity": tool_uid},
                "operation": operation,
                "agent": {"__entity": agent_uid},
                "envelope": {"__entity": envelope_uid},
                "request": cleaned,
            },
        }
        return request, entities

    def evaluate(
        self, *, instance, agent, envelope, scope: str, resource: str, context, subjects: dict | None = None
    ) -> tuple[bool, str]:
        """The guardrails' answer for this call, remembered by ``_subject_key`` and the call's own
        scope, resource and context (as JSON text).

        ``subjects``: for calls that share their instance, agent and envelope objects (a batch), a
        dict the caller keeps no longer than those objects: the subject's part of the key is then
        written once, found again by the objects' identity (which lasts as long as they do)."""
        cleaned = clean_context(context, keys=self.context_keys)
        if subjects is None:
            subject = self._subject_key(instance, agent, envelope)
        else:
            subject = subjects.get((id(instance), id(agent), id(envelope)))
            if subject is None:
                subject = subjects[(id(instance), id(agent), id(envelope))] = self._subject_key(
                    instance, agent, envelope
                )
        key = (*subject, scope, resource, json.dumps(cleaned, separators=(",", ":"), sort_keys=True) if cleaned else "")
        answer = self._answers.get(key)
        if answer is None:
            request, entities = self._request(
                instance=instance, agent=agent, envelope=envelope, scope=scope, resource=resource, cleaned=cleaned
            )
            answer = self._evaluate(request, entities)
            if len(self._answers) >= _MAX_REMEMBERED:
                self._answers.clear()
            self._answers[key] = answer
        return answer

    def _subject_key(self, instance, agent, envelope) -> tuple:
        """The subject's part of the key: with the call's scope, resource and context, exactly the
        values ``_request`` shows Cedar, as it converts them, in a tuple (building
        the request and writing it out as JSON cost more than a remembered answer saves). Whatever
        ``_request`` derives (the SPIFFE ID, the tool and operation, the resource's kind) comes from
        values here. A list of strings goes in as a tuple, any other list and the caller's context
        as JSON text, so that values Python finds equal but Cedar does not (``1``, ``1.0``,
        ``True``) never share an answer; the plain attributes are text fields. Every conversion
        ``_request`` makes is made here too, so a value it cannot take raises on a remembered
        question as on a new one. tests/tasks/test_policy.py changes each value and expects a
        fresh answer."""
        used = int(envelope.actions_used)
        return (
            str(agent.pk),
            agent.slug,
            str(agent.owner_id),
            agent.status,
            str(instance.pk),
            instance.origin,
            instance.status,
            str(envelope.pk),
            envelope.risk,
            _json_list(envelope.scopes),
            _json_list(envelope.resources),
            bool(envelope.may_delegate),
            int(envelope.delegation_depth),
            int(envelope.max_actions),
            used if self.reads_budget else None,
            envelope.policy_version or "",
        )

    def _evaluate(self, request: dict, entities: list) -> tuple[bool, str]:
        # With the schema, a caller context of the wrong type (a number or record where the schema
        # says String) is an error rather than a comparison that happens to pass.
        result = cedarpy.is_authorized(request, self.policy_set, json.dumps(entities), schema=self.schema)
        diagnostics = result.diagnostics
        if diagnostics.errors:
            # Fail closed: a forbid that errors must not silently let the call through.
            return False, "guardrail could not be evaluated: " + "; ".join(
                _describe_error(self, e) for e in diagnostics.errors
            )[:500]
        if result.allowed:
            return True, ""
        if diagnostics.reasons:
            return False, "forbidden by " + ", ".join(self.describe(r) for r in diagnostics.reasons)
        return False, "no guardrail permits this call"


def _json_list(values) -> tuple | str:
    """A list of strings as a tuple of them; anything else as its JSON text (see ``_key``)."""
    items = tuple(values)
    if all(type(item) is str for item in items):
        return items
    return json.dumps(list(values), separators=(",", ":"), sort_keys=True, default=str)


def _describe_error(guardrails: Guardrails, error) -> str:
    text = str(error)
    for policy_id in guardrails.by_id:
        if f"`{policy_id}`" in text or text.startswith(f"{policy_id}:"):
            return f"{guardrails.describe(policy_id)}: {text}"
    return text


def _annotation_id(text: str) -> str | None:
    match = re.match(r'\s*@id\s*\(\s*"((?:[^"\\]|\\.)*)"\s*\)', text)
    return match.group(1) if match else None


def caller_context_keys(schema_text: str) -> frozenset[str] | None:
    """The attribute names the schema's ``type CallerContext`` declares (None if it has none)."""
    for statement in cedar_statements(schema_text):
        text = schema_text[statement.start : statement.end]
        match = re.match(r"type\s+CallerContext\s*=\s*\{", text)
        if not match:
            continue
        keys, depth, i = set(), 1, match.end()
        while i < len(text) and depth:
            ch = text[i]
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif depth == 1:
                name = re.match(r'\s*(?://[^\n]*\s*)*("?)([A-Za-z_][A-Za-z0-9_]*)\1\??\s*:', text[i:])
                if name and (i == match.end() or text[i - 1] in "{,"):
                    keys.add(name.group(2))
            i += 1
        return frozenset(keys)
    return None


def clean_context(value, depth: int = 0, *, keys: frozenset[str] | None = None):
    """The caller's context as Cedar-safe JSON: strings, booleans, whole numbers, sets, records.
    At the top, only the ``keys`` the schema declares are kept (undeclared ones no guardrail can
    read anyway, and the schema would refuse them)."""
    if depth == 0:
        if not isinstance(value, dict):
            return {}
        if keys is not None:
            value = {k: v for k, v in value.items() if k in keys}
    if isinstance(value, dict):
        if depth >= _MAX_CONTEXT_DEPTH:
            return {}
        out = {}
        for key, item in list(value.items())[:_MAX_CONTEXT_ITEMS]:
            if not isinstance(key, str) or key.startswith("__") or item is None:
                continue
            out[key] = clean_context(item, depth + 1)
        return out
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        # Cedar's Long is 64-bit; anything larger becomes text rather than an error.
        return value if -(2**63) <= value < 2**63 else str(value)
    if isinstance(value, list | tuple):
        return [clean_context(v, depth + 1) for v in value[:_MAX_CONTEXT_ITEMS] if v is not None]
    return str(value)


# --- loading -------------------------------------------------------------------------------------


class _SampleInstance:
    pk = "00000000-0000-0000-0000-000000000001"
    origin = "registered"
    status = "active"


class _SampleAgent:
    pk = "00000000-0000-0000-0000-000000000002"
    slug = "sample"
    owner_id = 1
    status = "active"


class _SampleEnvelope:
    pk = "00000000-0000-0000-0000-000000000003"
    risk = "low"
    scopes = ["github:read"]
    resources = ["repo:acme/app"]
    may_delegate = False
    delegation_depth = 0
    max_actions = 10
    actions_used = 0
    policy_version = "sample"


def load_guardrails(
    policies_text: str | None, schema_text: str | None
) -> tuple[Guardrails | None, list[PolicyProblem]]:
    """Parse and validate the guardrails against the schema; problems name file and line."""
    if policies_text is None:
        return None, []
    if schema_text is None:
        return None, [
            PolicyProblem(SCHEMA_FILE, None, f"{GUARDRAILS_FILE} needs the Cedar schema {SCHEMA_FILE} beside it")
        ]
    problems: list[PolicyProblem] = []
    try:
        schema = cedarpy.Schema.from_str(schema_text)
    except ValueError as exc:
        problems.append(PolicyProblem(SCHEMA_FILE, _locate_schema_error(schema_text, str(exc)), str(exc)))
        schema = None
    statements = cedar_statements(policies_text)
    parsed_ok = True
    for statement in statements:
        try:
            cedarpy.PolicySet.from_str(policies_text[statement.start : statement.end])
        except ValueError as exc:
            parsed_ok = False
            problems.append(PolicyProblem(GUARDRAILS_FILE, locate_in(policies_text, statement, str(exc)), str(exc)))
    if parsed_ok:
        try:
            cedarpy.PolicySet.from_str(policies_text)
        except ValueError as exc:  # e.g. two policies with one @id
            problems.append(PolicyProblem(GUARDRAILS_FILE, None, str(exc)))
            parsed_ok = False
    if problems:
        return None, problems
    result = cedarpy.validate_policies(policies_text, schema)
    if not result.validation_passed:
        for error in result.errors:
            index = error.policy_id[len("policy") :] if error.policy_id.startswith("policy") else ""
            statement = statements[int(index)] if index.isdigit() and int(index) < len(statements) else None
            line = _validation_line(policies_text, statement, error.error) if statement else None
            name = result.id_annotations_by_policy_id.get(error.policy_id)
            label = f"guardrail {name!r}: " if name else ""
            problems.append(PolicyProblem(GUARDRAILS_FILE, line, f"{label}{error.error}"))
        return None, problems
    guardrails = Guardrails(policies_text, schema_text)
    # Prove the entities and context Mandate builds match the schema, so a schema edit that
    # Mandate cannot honour is refused here rather than failing every call later.
    request, entities = guardrails.request(
        instance=_SampleInstance,
        agent=_SampleAgent,
        envelope=_SampleEnvelope,
        scope="github:read",
        resource="repo:acme/app",
        context={},
    )
    check = cedarpy.is_authorized(request, guardrails.policy_set, json.dumps(entities), schema=guardrails.schema)
    errors = [e for e in check.diagnostics.errors if "failed to" in e or "schema" in e]
    if errors:
        return None, [PolicyProblem(SCHEMA_FILE, None, "does not describe what Mandate sends: " + "; ".join(errors))]
    return guardrails, []


def _validation_line(text: str, statement, message: str) -> int:
    """The line of the first `name` a validation error quotes, inside the policy it is about."""
    for token in re.findall(r"`([^`]+)`", message):
        if re.fullmatch(r"policy\d+", token):
            continue
        found = text.find(token.split("::")[-1].strip('"'), statement.start, statement.end)
        if found != -1:
            return text.count("\n", 0, found) + 1
    return statement.line


def _locate_schema_error(text: str, message: str) -> int | None:
    statements = cedar_statements(text)
    if "parsing schema" in message or "unexpected" in message:
        # Grow the prefix one declaration at a time; the first prefix that fails to *parse* holds
        # the mistake (a prefix may also fail only on a type declared later, which we skip).
        for end, statement in enumerate(statements, start=1):
            prefix = text[: statements[end - 1].end]
            try:
                cedarpy.Schema.from_str(prefix)
            except ValueError as exc:
                if "parsing schema" in str(exc) or "unexpected" in str(exc):
                    return locate_in(text, statement, str(exc))
        return None
    for statement in statements:
        line = token_line(text, statement, message)
        if line:
            return line
    return None
