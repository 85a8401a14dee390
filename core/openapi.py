"""The OpenAPI document states what the server enforces (drf-spectacular postprocessing hook, listed
in SPECTACULAR_SETTINGS). Each rule below mirrors a refusal the server makes for every endpoint
alike; rules of one endpoint live with its serializer or ``extend_schema``."""

from __future__ import annotations

import copy

_METHODS = {"get", "put", "post", "patch", "delete"}
# Both spellings of the events path take both methods (tasks/api/urls.py): the document says so.
_ALIASES = {"/api/v1/events": "/api/v1/events/", "/api/v1/events/": "/api/v1/events"}


def _error(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def strict_contract(result: dict, generator, request, public) -> dict:
    paths = result.get("paths", {})
    for item in paths.values():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            for param in operation.get("parameters", []):
                if param.get("in") != "query":
                    continue
                schema = param.setdefault("schema", {})
                if param["name"] in ("page", "page_size", "limit"):
                    schema.setdefault("minimum", 1)  # core.pagination: "a whole number from 1"
                elif schema.get("type") == "string":
                    # core.api.StrictFilterSet: an empty filter is refused; leave it out instead.
                    schema.setdefault("minLength", 1)
            responses = operation.setdefault("responses", {})
            if "requestBody" in operation:
                responses.setdefault("415", _error("The body is not JSON: send `Content-Type: application/json`."))
            if any(p.get("in") == "query" for p in operation.get("parameters", [])):
                responses.setdefault("414", {"description": "The request line is too long for the web server."})
            if any(p.get("name") in ("page", "cursor") for p in operation.get("parameters", [])):
                responses.setdefault(
                    "400",
                    {
                        "description": "Bad input: a page past the end, a malformed cursor or filter, named.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                )
    for path, other in _ALIASES.items():
        if path in paths and other in paths:
            for method, operation in list(paths[other].items()):
                if method in _METHODS and method not in paths[path]:
                    alias = copy.deepcopy(operation)
                    alias["operationId"] = f"{operation.get('operationId', method)}_alias"
                    alias["description"] = f"The same as `{method.upper()} {other}`. " + alias.get("description", "")
                    paths[path][method] = alias
    return result
