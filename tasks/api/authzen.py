"""The AuthZEN 1.0 decision point: discovery, ``/access/v1/evaluation``, ``/access/v1/evaluations``
and ``/access/v1/search/action`` (mapping in ``tasks.authzen``).

Authenticated exactly like ``POST /api/v1/decisions`` (a gateway's or an identity admin's API
token, the same authenticator and permission), and answered by the same decision code."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import errors
from core.errors import ValidationFailed
from tasks import authzen
from tasks.api.authentication import CachedApiTokenAuthentication, still_allowed
from tasks.api.permissions import IsGatewayOrAdmin
from tasks.api.plain import plain_endpoint
from tasks.decisions import REASONS, allowed_scopes, decide, decide_batch

# --- documentation of the shapes (input is read by hand in tasks.authzen) ------------------------


class _SubjectProperties(serializers.Serializer):
    token = serializers.CharField(help_text="the agent's credential (JWT) as presented to the gateway")


class _Subject(serializers.Serializer):
    type = serializers.ChoiceField(choices=[authzen.SUBJECT_TYPE])
    id = serializers.CharField(help_text="the instance's SPIFFE ID: must be the credential's `sub`")
    properties = _SubjectProperties()


class _Action(serializers.Serializer):
    name = serializers.CharField(max_length=130, help_text="the tool scope of the call, e.g. github:write")
    properties = serializers.DictField(required=False)


class _Resource(serializers.Serializer):
    type = serializers.CharField(max_length=100, help_text="`repo` for the resource string repo:acme/api")
    id = serializers.CharField(allow_blank=True, help_text="`acme/api` for the resource string repo:acme/api")
    properties = serializers.DictField(required=False)


class EvaluationRequestSerializer(serializers.Serializer):
    subject = _Subject()
    action = _Action()
    resource = _Resource()
    context = serializers.DictField(required=False, help_text="facts for the guardrails, at most 4096 bytes of JSON")


class _EvaluationItem(serializers.Serializer):
    subject = _Subject(required=False)
    action = _Action(required=False)
    resource = _Resource(required=False)
    context = serializers.DictField(required=False)


class _Options(serializers.Serializer):
    evaluations_semantic = serializers.ChoiceField(choices=list(authzen.SEMANTICS), required=False)


class EvaluationsRequestSerializer(serializers.Serializer):
    subject = _Subject(required=False, help_text="default for every evaluation")
    action = _Action(required=False, help_text="default for every evaluation")
    resource = _Resource(required=False, help_text="default for every evaluation")
    context = serializers.DictField(required=False, help_text="default for every evaluation")
    evaluations = _EvaluationItem(many=True, required=False, help_text=f"at most {authzen.MAX_EVALUATIONS}")
    options = _Options(required=False)


class _ReasonAdmin(serializers.Serializer):
    en = serializers.CharField()


class _ItemError(serializers.Serializer):
    status = serializers.IntegerField()
    message = serializers.CharField()
    field = serializers.CharField()


class _DecisionContext(serializers.Serializer):
    reason = serializers.ChoiceField(choices=REASONS, required=False)
    decision_id = serializers.CharField(allow_null=True, required=False)
    remaining_actions = serializers.IntegerField(allow_null=True, required=False)
    reason_admin = _ReasonAdmin(required=False)
    error = _ItemError(required=False, help_text="only for an item that is not a valid evaluation")


class EvaluationResponseSerializer(serializers.Serializer):
    decision = serializers.BooleanField()
    context = _DecisionContext()


class EvaluationsResponseSerializer(serializers.Serializer):
    evaluations = EvaluationResponseSerializer(many=True, required=False)
    decision = serializers.BooleanField(required=False, help_text="only when the request had no `evaluations`")
    context = _DecisionContext(required=False, help_text="only when the request had no `evaluations`")


class ActionSearchRequestSerializer(serializers.Serializer):
    subject = _Subject()
    resource = _Resource()
    context = serializers.DictField(required=False)


class _ActionName(serializers.Serializer):
    name = serializers.CharField()


class ActionSearchResponseSerializer(serializers.Serializer):
    results = _ActionName(many=True)


class ConfigurationSerializer(serializers.Serializer):
    policy_decision_point = serializers.URLField()
    access_evaluation_endpoint = serializers.URLField()
    access_evaluations_endpoint = serializers.URLField()
    search_action_endpoint = serializers.URLField()


_EXAMPLE = {
    "subject": {
        "type": "agent",
        "id": "spiffe://mandate.local/agent/triage-bot/i/3f2a",
        "properties": {"token": "eyJhbGciOiJFUzI1NiIs…"},
    },
    "action": {"name": "github:write"},
    "resource": {"type": "repo", "id": "acme/api"},
    "context": {"ticket": "INV-7"},
}


# --- views ---------------------------------------------------------------------------------------


def _read_body(request, limit: int):
    """The parsed JSON body, refused with a 400 beyond ``limit`` bytes (before it is parsed)."""
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if (declared.isdigit() and int(declared) > limit) or len(request.body) > limit:
        raise ValidationFailed(f"at most {limit} bytes of JSON", field="body")
    return request.data


def _malformed(exc: authzen.Malformed) -> ValidationFailed:
    return ValidationFailed(exc.message, field=exc.field)


class _DecisionPointView(APIView):
    authentication_classes = [CachedApiTokenAuthentication]
    permission_classes = [IsGatewayOrAdmin]


class EvaluationView(_DecisionPointView):
    @extend_schema(
        operation_id="authzen_access_evaluation",
        tags=["authzen"],
        request=EvaluationRequestSerializer,
        responses={200: EvaluationResponseSerializer, **errors(400, 403)},
        auth=[{"bearerAuth": []}],
        examples=[OpenApiExample("an agent's tool call", value=_EXAMPLE, request_only=True)],
        summary="AuthZEN Access Evaluation: decide one tool call",
        description="The same checks, order, reasons, budget and recording as POST /api/v1/decisions. "
        "subject = the agent instance (id: its SPIFFE ID, properties.token: its credential), "
        "action.name = the scope, resource = type:id. An allowed decision uses one action of the budget.",
    )
    def post(self, request):
        return Response(_evaluation(_read_body(request, authzen.MAX_EVALUATION_BODY_BYTES), request.user, request.auth))


class EvaluationsView(_DecisionPointView):
    @extend_schema(
        operation_id="authzen_access_evaluations",
        tags=["authzen"],
        request=EvaluationsRequestSerializer,
        responses={200: EvaluationsResponseSerializer, **errors(400, 403)},
        auth=[{"bearerAuth": []}],
        summary="AuthZEN Access Evaluations: decide up to 100 tool calls in order",
        description="Top-level subject/action/resource/context are defaults each evaluation may override. "
        "options.evaluations_semantic: execute_all (default), deny_on_first_deny or permit_on_first_permit "
        "(the answer ends with the item that stopped it; later items are neither decided nor recorded). "
        "An item that is not a valid evaluation is answered decision false with context.error, and is not "
        "recorded. Every decided item is recorded; each allowed one uses one action of the budget.",
    )
    def post(self, request):
        return Response(
            _evaluations(_read_body(request, authzen.MAX_EVALUATIONS_BODY_BYTES), request.user, request.auth)
        )


class ActionSearchView(_DecisionPointView):
    @extend_schema(
        operation_id="authzen_search_action",
        tags=["authzen"],
        request=ActionSearchRequestSerializer,
        responses={200: ActionSearchResponseSerializer, **errors(400, 403)},
        auth=[{"bearerAuth": []}],
        summary="AuthZEN Action Search: the scopes a decision on this resource would allow now",
        description="Every check of a decision, guardrails and budget included, for each scope the "
        "credential carries. Spends no budget and records nothing: what a gateway needs to filter tools/list.",
    )
    def post(self, request):
        return Response(
            _action_search(_read_body(request, authzen.MAX_EVALUATION_BODY_BYTES), request.user, request.auth)
        )


# --- the work, shared by the documented views and the plain endpoints the URLs serve ---------------


def _evaluation(body, user, token) -> dict:
    try:
        call = authzen.read_evaluation(body)
    except authzen.Malformed as exc:
        raise _malformed(exc) from None
    with still_allowed(token) as caller:
        decision = decide(**call.__dict__, reported_by=user.get_username(), caller_token_id=caller)
    return authzen.evaluation_answer(decision)


def _evaluations(body, user, token) -> dict:
    try:
        batch = authzen.read_evaluations(body)
    except authzen.Malformed as exc:
        raise _malformed(exc) from None
    who = user.get_username()
    if not isinstance(batch, authzen.Batch):  # no "evaluations": a single evaluation
        with still_allowed(token) as caller:
            return authzen.evaluation_answer(decide(**batch.__dict__, reported_by=who, caller_token_id=caller))
    calls = [item if not isinstance(item, authzen.Malformed) else None for item in batch.items]
    with still_allowed(token) as caller:
        decisions = decide_batch(calls, stop_on=batch.stop_on, reported_by=who, caller_token_id=caller)
    answers = [
        authzen.evaluation_answer(decision) if decision is not None else authzen.malformed_answer(item)
        for item, decision in zip(batch.items, decisions, strict=False)
    ]
    return {"evaluations": answers}


def _action_search(body, user, caller_token) -> dict:
    try:
        spiffe_id, token, resource, context = authzen.read_action_search(body)
    except authzen.Malformed as exc:
        raise _malformed(exc) from None
    with still_allowed(caller_token) as caller:
        scopes = allowed_scopes(
            token=token, subject=spiffe_id, resource=resource, context=context, caller_token_id=caller
        )
    return {"results": [{"name": scope} for scope in scopes]}


# Plain Django views without DRF's request cycle, described by the classes above (tasks.api.plain).
evaluation_endpoint = plain_endpoint(EvaluationView, max_body=authzen.MAX_EVALUATION_BODY_BYTES)(
    lambda request, body, user: _evaluation(body, user, request.auth)
)
evaluations_endpoint = plain_endpoint(EvaluationsView, max_body=authzen.MAX_EVALUATIONS_BODY_BYTES)(
    lambda request, body, user: _evaluations(body, user, request.auth)
)
action_search_endpoint = plain_endpoint(ActionSearchView, max_body=authzen.MAX_EVALUATION_BODY_BYTES)(
    lambda request, body, user: _action_search(body, user, request.auth)
)


def _absolute(request, name: str) -> str:
    path = reverse(name)
    if settings.MANDATE_PUBLIC_URL:
        return settings.MANDATE_PUBLIC_URL + path
    return request.build_absolute_uri(path)


class ConfigurationView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="authzen_configuration",
        tags=["authzen"],
        responses={200: ConfigurationSerializer},
        auth=[],
        summary="AuthZEN policy decision point metadata",
    )
    def get(self, request):
        base = settings.MANDATE_PUBLIC_URL or request.build_absolute_uri("/").rstrip("/")
        response = Response(
            {
                "policy_decision_point": base,
                "access_evaluation_endpoint": _absolute(request, "authzen-evaluation"),
                "access_evaluations_endpoint": _absolute(request, "authzen-evaluations"),
                "search_action_endpoint": _absolute(request, "authzen-search-action"),
            }
        )
        response["Cache-Control"] = "public, max-age=300"
        return response
