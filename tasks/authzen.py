"""OpenID AuthZEN Authorization API 1.0, mapped onto request-time decisions.

AuthZEN is the question gateways and MCP servers already know how to ask a policy decision point;
this module translates it to and from ``tasks.decisions``, which answers it exactly as it answers
``POST /api/v1/decisions`` (same checks, order, reasons, budget and recording). The mapping:

- ``subject`` = ``{"type": "agent", "id": "<the instance's SPIFFE ID>", "properties": {"token":
  "<the credential>"}}``; the id must be the credential's ``sub``, else the decision is
  ``token_invalid``;
- ``action.name`` = the scope (``github:write``);
- ``resource`` = ``{"type": "repo", "id": "acme/api"}`` for the resource string ``repo:acme/api``
  (type, colon, id);
- ``context`` = the decision's context (facts for the guardrails, recorded with the decision).

The answer is ``{"decision": bool, "context": {"reason", "decision_id", "remaining_actions",
"reason_admin": {"en": "<detail>"}}}``. Reading is by hand, as for the decisions endpoint: it runs on
every tool call, and each problem names its field (``evaluations[3].action.name``).
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.activity import json_text, storable
from tasks.decisions import Call, Decision

SUBJECT_TYPE = "agent"
MAX_CONTEXT_BYTES = 4096  # as for POST /api/v1/decisions
MAX_EVALUATIONS = 100
# A single evaluation carries one credential (~1 KB) and a context of at most 4 KB; a batch up to
# a hundred of them. Anything larger is refused before it is parsed.
MAX_EVALUATION_BODY_BYTES = 16 * 1024
MAX_EVALUATIONS_BODY_BYTES = 1024 * 1024

EXECUTE_ALL = "execute_all"
DENY_ON_FIRST_DENY = "deny_on_first_deny"
PERMIT_ON_FIRST_PERMIT = "permit_on_first_permit"
# What each semantic stops on: nothing, the first denial, the first permit.
SEMANTICS = {EXECUTE_ALL: None, DENY_ON_FIRST_DENY: False, PERMIT_ON_FIRST_PERMIT: True}


class Malformed(Exception):
    """A request (or one item of a batch) that is not a valid AuthZEN evaluation."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


_MISSING = object()  # an optional member left out (null is not leaving it out: the schema says object)


def _object(value, field: str, *, required: bool = True) -> dict | None:
    if value is _MISSING and not required:
        return None
    if not isinstance(value, dict):
        raise Malformed(field, "an object" if required else "an object, or leave it out")
    return value


def _string(value, field: str, *, max_length: int, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or len(value) > max_length or (not value and not allow_empty):
        size = f"0 to {max_length}" if allow_empty else f"1 to {max_length}"
        raise Malformed(field, f"a string of {size} characters")
    if not storable(value):
        raise Malformed(field, "a string without NUL characters or unpaired surrogates")
    return value


def read_subject(value, field: str = "subject") -> tuple[str, str]:
    """``(spiffe id, credential)`` from an AuthZEN subject."""
    subject = _object(value, field)
    if subject.get("type") != SUBJECT_TYPE:
        raise Malformed(f"{field}.type", f"{SUBJECT_TYPE!r}: this decision point answers for agents")
    spiffe_id = _string(subject.get("id"), f"{field}.id", max_length=2048)
    properties = _object(subject.get("properties"), f"{field}.properties")
    token = properties.get("token")
    if not isinstance(token, str) or not token or not storable(token):
        raise Malformed(f"{field}.properties.token", "the agent's credential (JWT), a string")
    return spiffe_id, token


def read_action(value, field: str = "action") -> str:
    action = _object(value, field)
    _object(action.get("properties", _MISSING), f"{field}.properties", required=False)
    return _string(action.get("name"), f"{field}.name", max_length=130)


def read_resource(value, field: str = "resource") -> str:
    """The resource string ``type:id``."""
    resource = _object(value, field)
    _object(resource.get("properties", _MISSING), f"{field}.properties", required=False)
    kind = _string(resource.get("type"), f"{field}.type", max_length=100)
    identifier = _string(resource.get("id"), f"{field}.id", max_length=511, allow_empty=True)
    joined = f"{kind}:{identifier}"
    if len(joined) > 512:
        raise Malformed(field, "type and id together of at most 511 characters")
    return joined


def read_context(value, field: str = "context") -> dict:
    if value is _MISSING:
        return {}
    context = _object(value, field)
    if context:
        text = json_text(context)
        if text is None:
            raise Malformed(field, "JSON without NaN, Infinity or NUL characters")
        if len(text.encode()) > MAX_CONTEXT_BYTES:
            raise Malformed(field, f"at most {MAX_CONTEXT_BYTES} bytes of JSON")
    return context


_READERS = {"subject": read_subject, "action": read_action, "resource": read_resource, "context": read_context}


def read_defaults(defaults: dict) -> dict:
    """The top-level defaults of a batch that read cleanly, read once: what ``read_evaluation``
    would make of each for every item that leaves it out. A default that does not read is left
    out, so each such item reads it again and the problem names that item's field."""
    read = {}
    for key, value in defaults.items():
        try:
            read[key] = _READERS[key](value)
        except Malformed:
            continue
    return read


def read_evaluation(body, *, defaults: dict | None = None, prefix: str = "", read: dict | None = None) -> Call:
    """One evaluation: the request's own 4-tuple, each member falling back to ``defaults``
    (``read``: those of them ``read_defaults`` read already)."""
    item = _object(body, prefix or "body")
    merged = {
        **(defaults or {}),
        **{key: item[key] for key in ("subject", "action", "resource", "context") if key in item},
    }
    for key in ("subject", "action", "resource"):
        if key not in merged:
            raise Malformed(f"{prefix}{key}", "required (here or as a top-level default)")
    # A member the item leaves out is its default, the same value for every item: read once.
    done = {key: value for key, value in read.items() if key not in item} if read else {}
    spiffe_id, token = done["subject"] if "subject" in done else read_subject(merged["subject"], f"{prefix}subject")
    return Call(
        token=token,
        subject=spiffe_id,
        scope=done["action"] if "action" in done else read_action(merged["action"], f"{prefix}action"),
        resource=done["resource"] if "resource" in done else read_resource(merged["resource"], f"{prefix}resource"),
        context=(
            done["context"] if "context" in done else read_context(merged.get("context", _MISSING), f"{prefix}context")
        ),
    )


@dataclass(frozen=True)
class Batch:
    """An Access Evaluations request: each item a ``Call`` or the ``Malformed`` it was."""

    items: list[Call | Malformed]
    stop_on: bool | None


def read_evaluations(body) -> Batch | Call:
    """An Access Evaluations request. Without an ``evaluations`` array it is a single evaluation
    (the specification's backwards-compatible form) and a ``Call`` is returned."""
    request = _object(body, "body")
    options = _object(request.get("options", _MISSING), "options", required=False) or {}
    semantic = options.get("evaluations_semantic", EXECUTE_ALL)
    if not isinstance(semantic, str) or semantic not in SEMANTICS:
        raise Malformed("options.evaluations_semantic", "one of " + ", ".join(SEMANTICS))
    if "evaluations" not in request:
        return read_evaluation(request)
    evaluations = request["evaluations"]
    if not isinstance(evaluations, list):
        raise Malformed("evaluations", "an array of evaluations")
    if len(evaluations) > MAX_EVALUATIONS:
        raise Malformed("evaluations", f"at most {MAX_EVALUATIONS} evaluations in one request")
    defaults = {key: request[key] for key in ("subject", "action", "resource", "context") if key in request}
    read = read_defaults(defaults)
    items: list[Call | Malformed] = []
    for n, item in enumerate(evaluations):
        try:
            items.append(read_evaluation(item, defaults=defaults, prefix=f"evaluations[{n}].", read=read))
        except Malformed as malformed:
            items.append(malformed)
    return Batch(items=items, stop_on=SEMANTICS[semantic])


def read_action_search(body) -> tuple[str, str, str, dict]:
    """An Action Search request: ``(spiffe id, credential, resource string, context)``."""
    request = _object(body, "body")
    spiffe_id, token = read_subject(request.get("subject"))
    return spiffe_id, token, read_resource(request.get("resource")), read_context(request.get("context", _MISSING))


# --- answers ---------------------------------------------------------------------------------------


def evaluation_answer(decision: Decision) -> dict:
    return {
        "decision": decision.allow,
        "context": {
            "reason": decision.reason,
            "decision_id": str(decision.decision_id) if decision.decision_id is not None else None,
            "remaining_actions": decision.remaining_actions,
            # The specification's shape for a reason meant for administrators, not end users.
            "reason_admin": {"en": decision.detail},
        },
    }


def malformed_answer(malformed: Malformed) -> dict:
    """A batch item that is not a valid evaluation: denied in its place, the error in its context."""
    return {
        "decision": False,
        "context": {"error": {"status": 400, "message": malformed.message, "field": malformed.field}},
    }
