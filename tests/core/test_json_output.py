"""The hot paths' JSON answer writes exactly what JsonResponse writes, compact or not."""

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from django.http import JsonResponse

from core.json_output import json_response

DATA = {
    "allow": True,
    "decision_id": "17",
    "instance": uuid.UUID("6cf41dce-ab2c-4efd-9949-0052b4965ad1"),
    "at": datetime(2026, 12, 3, 17, 0, 1, 250_000, tzinfo=UTC),
    "amount": Decimal("1.50"),
    "context": {"reason": "ok", "remaining_actions": None, "scopes": ["github:write"]},
}


def test_the_answer_is_jsonresponses_bytes():
    answer = json_response(DATA)

    assert answer.content == JsonResponse(DATA).content
    assert answer["Content-Type"] == "application/json"
    assert answer.status_code == 200


def test_the_compact_answer_is_jsonresponses_bytes_with_compact_separators():
    answer = json_response(DATA, compact=True)

    assert answer.content == JsonResponse(DATA, json_dumps_params={"separators": (",", ":")}).content
    assert b", " not in answer.content and b": " not in answer.content
