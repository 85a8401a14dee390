"""``/api/v1/envelopes/``: task envelopes — request, read, decide, end and re-task."""

from __future__ import annotations

import django_filters
from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from accounts.authentication import ApiTokenAuthentication
from accounts.permissions import RolePermission
from accounts.roles import AGENT_OWNER, AUDITOR, IDENTITY_ADMIN
from audit.services import Actor
from core.api import (
    UUID_PATH,
    CommentSerializer,
    ReasonSerializer,
    RequiredCommentSerializer,
    StrictBooleanField,
    StrictCharField,
    StrictFilterSet,
    StrictIntegerField,
    StrictSerializer,
    StrictUUIDField,
    errors,
)
from core.audiences import AUDIENCE_VALIDATOR, MAX_AUDIENCE_CHARS, MAX_AUDIENCES
from identities import selectors as identity_selectors
from identities.validators import RESOURCE_RE, SCOPE_RE
from tasks import lifecycle, selectors, services
from tasks.authentication import AgentCredentialAuthentication, AgentPrincipal
from tasks.models import Approval, TaskEnvelope

SCOPE_VALIDATOR = RegexValidator(SCOPE_RE, "not a scope of the form tool:action")
RESOURCE_VALIDATOR = RegexValidator(RESOURCE_RE, "1 to 512 visible characters, no spaces")


class DenySerializer(RequiredCommentSerializer):
    """A denial says why (tasks.services.deny_envelope refuses a blank comment)."""


class ApprovalSerializer(serializers.ModelSerializer):
    by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Approval
        fields = ["by", "decision", "comment", "at"]
        read_only_fields = fields


class EnvelopeSerializer(serializers.ModelSerializer):
    instance = serializers.UUIDField(source="instance_id", read_only=True)
    agent = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    scopes = serializers.ListField(child=serializers.CharField(), read_only=True)
    resources = serializers.ListField(child=serializers.CharField(), read_only=True)
    audiences = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="Who its credentials may be for (their aud); /oauth/token refuses any other with invalid_target.",
    )
    approvals = ApprovalSerializer(many=True, read_only=True)
    supersedes = serializers.UUIDField(source="supersedes_id", read_only=True, allow_null=True)
    superseded_by = serializers.SerializerMethodField()
    parent_envelope = serializers.UUIDField(source="parent_envelope_id", read_only=True, allow_null=True)

    class Meta:
        model = TaskEnvelope
        fields = [
            "id",
            "instance",
            "agent",
            "state",
            "risk",
            "intent",
            "scopes",
            "resources",
            "audiences",
            "duration_seconds",
            "max_actions",
            "actions_used",
            "may_delegate",
            "delegation_depth",
            "requested_by",
            "required_approvals",
            "approvals",
            "approved_at",
            "expires_at",
            "ended_at",
            "end_reason",
            "policy_version",
            "supersedes",
            "superseded_by",
            "parent_envelope",
            "auto_approved_by",
            "created_at",
            "drift_count",
            "last_drift_at",
        ]
        read_only_fields = fields

    def get_superseded_by(self, envelope: TaskEnvelope) -> str | None:
        # Reverse one-to-one: the selector's select_related caches it, including its absence.
        try:
            return str(envelope.superseded_by.id)
        except TaskEnvelope.DoesNotExist:
            return None


class EnvelopeTermsSerializer(StrictSerializer):
    """What an envelope asks for; shared by request and re-task."""

    intent = StrictCharField(max_length=4000, help_text="What the task is for, in plain words.")
    scopes = serializers.ListField(
        child=StrictCharField(max_length=127, validators=[SCOPE_VALIDATOR]),
        min_length=1,
        max_length=200,
        help_text="tool:action scopes, each within the agent's ceiling.",
    )
    resources = serializers.ListField(
        child=StrictCharField(max_length=512, validators=[RESOURCE_VALIDATOR]),
        max_length=100,
        help_text="Resource patterns such as repo:acme/*.",
    )
    audiences = serializers.ListField(
        child=StrictCharField(max_length=MAX_AUDIENCE_CHARS, validators=[AUDIENCE_VALIDATOR]),
        min_length=1,
        max_length=MAX_AUDIENCES,
        required=False,
        help_text="Who its credentials may be for (their aud): absolute https URLs (http only on a loopback "
        "address in development) or audience names such as sts.amazonaws.com. Default: the deployment's "
        "default audience only (MANDATE_DEFAULT_AUDIENCE). A re-task keeps the old envelope's audiences "
        "unless it names others.",
    )
    duration_seconds = StrictIntegerField(
        min_value=1, max_value=10 * 365 * 86400, help_text="Requested duration; the clock starts at approval."
    )
    max_actions = StrictIntegerField(
        min_value=1,
        max_value=services.MAX_ACTIONS_LIMIT,
        help_text="The action budget: how many tool calls may be allowed.",
    )
    may_delegate = StrictBooleanField(required=False, default=False)
    delegation_depth = StrictIntegerField(
        required=False, default=0, min_value=0, max_value=services.MAX_DELEGATION_DEPTH
    )


class EnvelopeCreateSerializer(EnvelopeTermsSerializer):
    instance = StrictUUIDField(help_text="The instance the envelope is for.")

    def validate_instance(self, value):
        instance = identity_selectors.instances_for(self.context["request"].user).filter(pk=value).first()
        if instance is None:
            raise serializers.ValidationError("no such instance")
        return instance


class EnvelopeFilter(StrictFilterSet):
    state = django_filters.ChoiceFilter(choices=TaskEnvelope.State.choices)
    agent = django_filters.CharFilter(field_name="agent__slug", max_length=63, help_text="Agent slug.")
    instance = django_filters.UUIDFilter(field_name="instance_id")

    class Meta:
        model = TaskEnvelope
        fields = ["state", "agent", "instance"]


class OwnInstanceOrRole(RolePermission):
    """``complete`` is also open to the envelope's own instance, authenticated by its credential."""

    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, AgentPrincipal) or super().has_permission(request, view)


_ONE = {200: EnvelopeSerializer, **errors(400, 403, 404, 409)}


@extend_schema_view(
    list=extend_schema(
        summary="List the envelopes you may see", responses={200: EnvelopeSerializer(many=True), **errors(400, 403)}
    ),
    retrieve=extend_schema(summary="One envelope", responses={200: EnvelopeSerializer, **errors(403, 404)}),
    create=extend_schema(
        summary="Request an envelope (pending, or approved when a policy rule auto-approves it)",
        request=EnvelopeCreateSerializer,
        responses={201: EnvelopeSerializer, **errors(400, 403)},
    ),
)
class EnvelopeViewSet(
    mixins.CreateModelMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    serializer_class = EnvelopeSerializer
    permission_classes = [IsAuthenticated, RolePermission]
    read_roles = (IDENTITY_ADMIN, AUDITOR, AGENT_OWNER)
    write_roles = (IDENTITY_ADMIN, AGENT_OWNER)
    filterset_class = EnvelopeFilter
    lookup_value_regex = UUID_PATH

    def get_queryset(self):
        return selectors.envelopes_for(self.request.user).order_by("-created_at", "id")

    def _render(self, envelope: TaskEnvelope, status_code: int = status.HTTP_200_OK) -> Response:
        fresh = selectors.envelopes_for(self.request.user).get(pk=envelope.pk)
        return Response(EnvelopeSerializer(fresh).data, status=status_code)

    def create(self, request, *args, **kwargs):
        body = EnvelopeCreateSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        envelope = services.request_envelope(actor=request.user, request=request, **body.validated_data)
        return self._render(envelope, status.HTTP_201_CREATED)

    @extend_schema(
        summary="Approve (one admin's decision; quorum per policy)", request=CommentSerializer, responses=_ONE
    )
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        envelope = self.get_object()
        body = CommentSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        envelope = services.approve_envelope(
            envelope=envelope, actor=request.user, request=request, **body.validated_data
        )
        return self._render(envelope)

    @extend_schema(summary="Deny, saying why", request=DenySerializer, responses=_ONE)
    @action(detail=True, methods=["post"])
    def deny(self, request, pk=None):
        envelope = self.get_object()
        body = DenySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        envelope = services.deny_envelope(envelope=envelope, actor=request.user, request=request, **body.validated_data)
        return self._render(envelope)

    @extend_schema(
        summary="Revoke; every credential under it is revoked at once", request=ReasonSerializer, responses=_ONE
    )
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        envelope = self.get_object()
        body = ReasonSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        envelope = lifecycle.revoke_envelope(
            envelope=envelope, actor=request.user, request=request, **body.validated_data
        )
        return self._render(envelope)

    @extend_schema(
        summary="Mark the task done; its credentials are revoked",
        description="By the agent's owner, an identity admin, or the envelope's own instance presenting "
        "its live credential (Authorization: Bearer <credential>).",
        request=None,
        responses=_ONE,
    )
    @action(
        detail=True,
        methods=["post"],
        permission_classes=[IsAuthenticated, OwnInstanceOrRole],
        authentication_classes=[ApiTokenAuthentication, AgentCredentialAuthentication, SessionAuthentication],
    )
    def complete(self, request, pk=None):
        envelope = self.get_object()  # an instance's credential sees only its own envelope
        actor = Actor.of_instance(request.user.instance) if isinstance(request.user, AgentPrincipal) else request.user
        envelope = lifecycle.complete_envelope(envelope=envelope, actor=actor, request=request)
        return self._render(envelope)

    @extend_schema(
        summary="Re-task: a new pending envelope supersedes this one, whose credentials are revoked",
        request=EnvelopeTermsSerializer,
        responses={201: EnvelopeSerializer, **errors(400, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def retask(self, request, pk=None):
        envelope = self.get_object()
        body = EnvelopeTermsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        new = lifecycle.retask_envelope(envelope=envelope, actor=request.user, request=request, **body.validated_data)
        return self._render(new, status.HTTP_201_CREATED)
