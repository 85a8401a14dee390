"""``POST /api/v1/events`` (a batch of reported activity) and ``GET /api/v1/events/`` (the record)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import ApiTokenAuthentication
from accounts.roles import GATEWAY, IDENTITY_ADMIN, has_role
from core.api import StrictSerializer, errors
from core.errors import ValidationFailed
from core.pagination import NewestFirstCursorPagination
from tasks.activity import MAX_BATCH, Reporter, ingest_events
from tasks.authentication import AgentCredentialAuthentication, AgentPrincipal
from tasks.models import ActivityEvent
from tasks.selectors import activity_for


class ReportedEventSerializer(StrictSerializer):
    kind = serializers.ChoiceField(choices=["tool_call", "secret_access", "privilege_escalation"])
    scope = serializers.CharField(required=False, max_length=130)
    resource = serializers.CharField(required=False, max_length=512)
    outcome = serializers.CharField(required=False, max_length=64)
    occurred_at = serializers.DateTimeField(required=False)
    details = serializers.DictField(required=False)
    token = serializers.CharField(required=False, help_text="the agent's credential; gateways only")


class EventBatchSerializer(StrictSerializer):
    # Documentation only: the view validates by hand (tasks.activity.ingest_events).
    events = serializers.ListField(
        child=ReportedEventSerializer(), min_length=1, max_length=MAX_BATCH, help_text=f"1 to {MAX_BATCH} events"
    )


class ActivityEventSerializer(serializers.ModelSerializer):
    # Null on decisions about a credential that named no known agent (an invalid token, say).
    agent = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    instance = serializers.UUIDField(source="instance_id", read_only=True, allow_null=True)
    envelope = serializers.UUIDField(source="envelope_id", read_only=True, allow_null=True)

    class Meta:
        model = ActivityEvent
        fields = [
            "id",
            "kind",
            "agent",
            "instance",
            "envelope",
            "jti",
            "scope",
            "resource",
            "allow",
            "reason",
            "outcome",
            "drift",
            "policy_version",
            "details",
            "occurred_at",
            "recorded_at",
            "reported_by",
        ]
        read_only_fields = fields


class EventIngestView(APIView):
    authentication_classes = [ApiTokenAuthentication, AgentCredentialAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=EventBatchSerializer,
        responses={
            202: inline_serializer("EventsAccepted", {"accepted": serializers.IntegerField()}),
            **errors(400, 403),
        },
        summary="Report a batch of tool calls, secret accesses and escalation attempts",
        description="Sent by an agent with its own credential (attributed to its instance and "
        "envelope) or by a gateway naming `token` per event. Validated whole: one "
        "bad event rejects the batch with 400 naming `events[i].field`, and nothing "
        "is stored.",
    )
    def post(self, request):
        user = request.user
        if isinstance(user, AgentPrincipal):
            reporter = Reporter(name=user.get_username(), credential=user.credential)
        elif has_role(user, GATEWAY, IDENTITY_ADMIN):
            reporter = Reporter(name=user.get_username())
        else:
            raise PermissionDenied("only gateways, identity admins or the agent itself report activity")
        data = request.data
        if isinstance(data, dict) and data.keys() - {"events"}:
            raise ValidationFailed("unknown field", field=sorted(data.keys() - {"events"})[0][:100])
        events = data.get("events") if isinstance(data, dict) else None
        accepted = ingest_events(events=events, reporter=reporter)
        return Response({"accepted": accepted}, status=status.HTTP_202_ACCEPTED)


def _uuid_param(request, name):
    value = request.query_params.get(name)
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValidationFailed("a UUID", field=name) from None


class EventListView(generics.ListAPIView):
    serializer_class = ActivityEventSerializer
    pagination_class = NewestFirstCursorPagination
    filter_backends: list = []

    @extend_schema(
        parameters=[
            OpenApiParameter("agent", OpenApiTypes.STR, description="agent slug or id"),
            OpenApiParameter("instance", OpenApiTypes.UUID),
            OpenApiParameter("envelope", OpenApiTypes.UUID),
            OpenApiParameter("kind", OpenApiTypes.STR, enum=[k.value for k in ActivityEvent.Kind]),
            OpenApiParameter("since", OpenApiTypes.DATETIME, description="occurred at or after"),
        ],
        responses={200: ActivityEventSerializer(many=True), **errors(400)},
        summary="The activity record, newest first (owners see their own agents')",
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        params = self.request.query_params
        for name in ("agent", "instance", "envelope", "kind", "since"):
            if params.get(name) == "":  # as core.api.StrictFilterSet: an empty filter is bad input
                raise ValidationFailed("empty; leave the parameter out to match everything", field=name)
        qs = activity_for(self.request.user)
        agent = params.get("agent")
        if agent:
            try:
                qs = qs.filter(agent_id=uuid.UUID(agent))
            except ValueError:
                qs = qs.filter(agent__slug=agent)
        for name in ("instance", "envelope"):
            value = _uuid_param(self.request, name)
            if value is not None:
                qs = qs.filter(**{f"{name}_id": value})
        kind = params.get("kind")
        if kind:
            if kind not in ActivityEvent.Kind.values:
                raise ValidationFailed(f"one of {', '.join(ActivityEvent.Kind.values)}", field="kind")
            qs = qs.filter(kind=kind)
        since = params.get("since")
        if since:
            try:
                # An unescaped '+' of a UTC offset arrives as a space.
                when = datetime.fromisoformat(since.replace(" ", "+"))
            except ValueError:
                raise ValidationFailed("an ISO 8601 time", field="since") from None
            try:  # in UTC: PostgreSQL takes offsets of at most 15:59, Python up to 23:59
                when = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
            except OverflowError:
                raise ValidationFailed("an ISO 8601 time", field="since") from None
            qs = qs.filter(occurred_at__gte=when)
        return qs
