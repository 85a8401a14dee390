"""``POST /api/v1/decisions``: a gateway asks whether one tool call may go ahead."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import AgentCredentialRefusal
from core.api import errors
from core.errors import ValidationFailed
from tasks.activity import json_text, storable
from tasks.api.authentication import CachedApiTokenAuthentication, still_allowed
from tasks.api.permissions import IsGatewayOrAdmin
from tasks.api.plain import plain_endpoint
from tasks.decisions import REASONS, decide

MAX_CONTEXT_BYTES = 4096
# Far above any real request (a credential is about a kilobyte): only refuses the absurd.
MAX_BODY_BYTES = 1024 * 1024


class DecisionRequestSerializer(serializers.Serializer):
    # An empty or malformed token is a decision (deny, token_invalid), not bad input.
    token = serializers.CharField(
        allow_blank=True, help_text="the agent's credential (JWT) as presented to the gateway"
    )
    scope = serializers.CharField(max_length=130, help_text="the tool scope of the call, e.g. github:write")
    resource = serializers.CharField(
        max_length=512, allow_blank=True, help_text="what the call acts on, e.g. repo:acme/api"
    )
    context = serializers.DictField(required=False, help_text="optional facts for the guardrail policy")


class DecisionSerializer(serializers.Serializer):
    allow = serializers.BooleanField()
    reason = serializers.ChoiceField(choices=REASONS)
    detail = serializers.CharField()
    decision_id = serializers.CharField()
    envelope = serializers.UUIDField(allow_null=True)
    instance = serializers.UUIDField(allow_null=True)
    remaining_actions = serializers.IntegerField(allow_null=True)


def parse_decision_request(data) -> dict:
    """Validate by hand: this runs on every tool call, and a serializer costs more than the checks."""
    if not isinstance(data, dict):
        raise ValidationFailed("a JSON object with token, scope, resource and optional context", field="token")
    token = data.get("token")
    if not isinstance(token, str) or not storable(token):
        raise ValidationFailed("the agent's credential, a string", field="token")
    scope = data.get("scope")
    if not isinstance(scope, str) or not 0 < len(scope) <= 130 or not storable(scope):
        raise ValidationFailed("a scope string of 1 to 130 characters", field="scope")
    resource = data.get("resource")
    if not isinstance(resource, str) or len(resource) > 512 or not storable(resource):
        raise ValidationFailed("a resource string of at most 512 characters", field="resource")
    context = data.get("context", {})
    if not isinstance(context, dict):  # null too: the schema says object, leave it out for none
        raise ValidationFailed("an object", field="context")
    if context:
        text = json_text(context)
        if text is None:
            raise ValidationFailed("JSON without NaN, Infinity or NUL characters", field="context")
        if len(text) > MAX_CONTEXT_BYTES:
            raise ValidationFailed(f"at most {MAX_CONTEXT_BYTES} bytes of JSON", field="context")
    return {"token": token, "scope": scope, "resource": resource, "context": context}


class DecisionView(APIView):
    authentication_classes = [CachedApiTokenAuthentication, AgentCredentialRefusal]
    permission_classes = [IsGatewayOrAdmin]

    # The cached authenticator is the ordinary API-token scheme; name it so, not as a second scheme.
    @extend_schema(
        request=DecisionRequestSerializer,
        responses={200: DecisionSerializer, **errors(400, 403)},
        auth=[{"bearerAuth": []}],
        summary="Decide one tool call against its credential and envelope",
        description="Checks in order and answers the first failing reason. An allowed "
        "decision uses one action of the budget. Every decision is recorded "
        "before it is answered.",
    )
    def post(self, request):
        return Response(_answer(request.data, request.user, request.auth))


def _answer(body, user, token) -> dict:
    fields = parse_decision_request(body)
    with still_allowed(token) as caller:
        return decide(**fields, reported_by=user.get_username(), caller_token_id=caller).as_dict()


@plain_endpoint(DecisionView, max_body=MAX_BODY_BYTES)
def decisions_endpoint(request, body, user) -> dict:
    """What the URL serves: ``DecisionView`` without DRF's request cycle (see tasks.api.plain)."""
    return _answer(body, user, request.auth)
