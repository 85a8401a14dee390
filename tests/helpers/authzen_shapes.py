"""The response shapes of the OpenID AuthZEN Authorization API 1.0, as JSON Schemas for the tests.

Written from the specification (``api/authorization-api-1_0.md``: "Access Evaluation API Response",
"Access Evaluations API Response", "Action Search API Response", "Policy Decision Point Metadata")
and following the structure of the JSON Schemas published beside it in ``api/schemas/`` of the
public ``openid/authzen`` repository (``decision-base.json``, ``access-evaluation-response.json``,
``access-evaluations-response.json``, ``action-base.json``, ``search-action-response.json``,
``paginated-response.json``), © The OpenID Foundation.

One deliberate difference: ``decision-base.json`` declares ``context`` with
``"additionalProperties": false`` and no properties, which would allow only ``{}``; the
specification's text says the response context "can be any JSON object" and its own examples carry
members (``reason``, ``error``), so here ``context`` is any object.
"""

from __future__ import annotations

DRAFT = "https://json-schema.org/draft/2020-12/schema"

DECISION = {
    "type": "object",
    "required": ["decision"],
    "properties": {
        "decision": {"type": "boolean"},
        "context": {"type": "object"},
    },
}

EVALUATION_RESPONSE = {"$schema": DRAFT, **DECISION, "additionalProperties": False}

EVALUATIONS_RESPONSE = {
    "$schema": DRAFT,
    "type": "object",
    "properties": {"evaluations": {"type": "array", "items": DECISION}},
    "additionalProperties": False,
}

ACTION = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}, "properties": {"type": "object"}},
}

SEARCH_ACTION_RESPONSE = {
    "$schema": DRAFT,
    "type": "object",
    "required": ["results"],
    "properties": {
        "page": {
            "type": "object",
            "required": ["next_token"],
            "properties": {"next_token": {"type": "string"}, "count": {"type": "number"}, "total": {"type": "number"}},
        },
        "context": {"type": "object"},
        "results": {"type": "array", "items": ACTION},
    },
    "additionalProperties": False,
}

_URL = {"type": "string", "pattern": "^https?://[^?#]+$"}

CONFIGURATION = {
    "$schema": DRAFT,
    "type": "object",
    "required": ["policy_decision_point", "access_evaluation_endpoint"],
    "properties": {
        "policy_decision_point": _URL,
        "access_evaluation_endpoint": _URL,
        "access_evaluations_endpoint": _URL,
        "search_subject_endpoint": _URL,
        "search_resource_endpoint": _URL,
        "search_action_endpoint": _URL,
    },
}
