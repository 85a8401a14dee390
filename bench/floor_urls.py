"""Bench-only URLs: the project's own, plus two *floor* endpoints (``bench/bench_floor.py``).

A floor endpoint does the least that any implementation of the path must do in this stack, with
the project's own statements: the same Django request cycle and middleware, the body parsed, the
same prepared SQL sent through the same connection, an answer written. It leaves out everything
that is the project's own logic — token verification (the real path remembers a verified token
for a few seconds anyway), the API caller's lookup (likewise remembered), the checks, the
activity record's fields, the metrics. What separates the real endpoint from its floor is our
code; what separates the floor from ``/healthz`` is the stack (the statements' client work in
Django and psycopg, PostgreSQL's work, the body and the answer).

Never served by the project: only ``bench_floor.py`` points gunicorn at ``floor_settings``.
"""

from __future__ import annotations

import json
from datetime import datetime
from types import SimpleNamespace

from django.http import HttpResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from accounts.models import ApiToken
from console.urls import urlpatterns as project_urls
from core import ratelimit
from core.json_output import json_response
from core.sql import prepared_cursor
from tasks import decisions, oauth

_CALLER: list = []


def _caller_token_id():
    """The bench's one gateway API token, read once (the real path remembers its caller too)."""
    if not _CALLER:
        _CALLER.append(ApiToken.objects.values_list("id", flat=True).get())
    return _CALLER[0]


def _agent_column() -> int:
    """Where the instance's ``agent_id`` sits in the load statement's row."""
    _sql, models = decisions._load_statement()
    credential_fields = len(models[0][1])
    return credential_fields + models[1][2].index("agent_id")


_AGENT = _agent_column()


@csrf_exempt
def decision_floor(request) -> HttpResponse:
    """``POST /floor/decision`` ``{"jti", "scope", "resource", "context"}``: the decision's two
    statements — the credential's load with the caller's standing and audience, and the budget's
    action taken with the record written — and an answer."""
    body = json.loads(request.body)
    now: datetime = timezone.now()
    row = _load(body["jti"], now)
    reason, remaining, decision_id = _record((row[0], row[1], row[2], row[_AGENT]), body, now)
    return _answer(reason, remaining, decision_id)


def _answer(reason: str, remaining: int | None, decision_id: int) -> HttpResponse:
    answer = {
        "allow": reason == decisions.OK,
        "reason": reason,
        "decision_id": decision_id,
        "remaining_actions": remaining,
    }
    return json_response(answer, compact=True)  # as the decisions endpoint writes its answer


def _load(jti: str, now: datetime) -> tuple:
    """The decision's first statement: the credential, its instance, agent and envelope, and the
    caller's standing and audience."""
    token_id = _caller_token_id()
    sql, _models = decisions._load_with_caller_statement()
    params = [*decisions._caller_params(token_id, now), *decisions._serves_params(token_id), jti]
    with prepared_cursor() as cursor:
        cursor.execute(sql + " = %s", params)
        return cursor.fetchone()


def _record(ids: tuple, body: dict, now: datetime) -> tuple[str, int | None, int]:
    """The decision's second statement: one action of the budget taken and the record written."""
    jti, instance_id, envelope_id, agent_id = ids
    event = SimpleNamespace(
        id=None,
        envelope_id=envelope_id,
        agent_id=agent_id,
        instance_id=instance_id,
        jti=jti,
        scope=body["scope"],
        resource=body["resource"],
        policy_version="floor",
        details={"context": body.get("context") or {}},
        reported_by="floor",
    )
    reason, remaining = decisions._take_action_and_record(event, now)
    return reason, remaining, event.id


_IDS: dict[str, tuple] = {}


@csrf_exempt
def record_floor(request) -> HttpResponse:
    """``POST /floor/record``, the decision floor's body: the second statement alone (the action
    taken, the record written, committed), the credential's ids remembered per process after one
    load — the least a recorded decision costs, whatever checks it makes and however it reads."""
    body = json.loads(request.body)
    now: datetime = timezone.now()
    ids = _IDS.get(body["jti"])
    if ids is None:
        row = _load(body["jti"], now)
        ids = _IDS[body["jti"]] = (row[0], row[1], row[2], row[_AGENT])
    reason, remaining, decision_id = _record(ids, body, now)
    return _answer(reason, remaining, decision_id)


@csrf_exempt
def introspection_floor(request) -> HttpResponse:
    """``POST /floor/introspect`` (form: ``jti``): introspection's one statement — both rate-limit
    counts, the credential and the caller's standing — and an answer."""
    jti = request.POST["jti"]
    now = timezone.now()
    token_id = _caller_token_id()
    limits = [("introspect-address", "127.0.0.1", 10**8), ("introspect-client", str(token_id), 10**8)]
    standing = decisions.standing_params(token_id, now, oauth.INTROSPECTORS)
    read = ratelimit.Read(oauth._credential_for_introspection, jti, standing)
    _exceeded, row = ratelimit.hit_all_and_fetch(limits, read, window=60)
    answer = {"active": bool(row and row["caller_ok"]), "jti": jti, "token_type": "Bearer"}
    return json_response(answer)  # as introspection writes its answer


urlpatterns = [
    path("floor/decision", decision_floor),
    path("floor/record", record_floor),
    path("floor/introspect", introspection_floor),
    *project_urls,
]
