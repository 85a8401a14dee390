"""``/api/v1/agents/``: registered kinds of agent, their ceilings and lifecycle, and instance
registration under an agent."""

from __future__ import annotations

import django_filters
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from accounts.permissions import RolePermission
from accounts.roles import AGENT_OWNER, AUDITOR, IDENTITY_ADMIN
from core.api import (
    SLUG_PATH,
    CommentSerializer,
    StrictCharField,
    StrictFilterSet,
    StrictIntegerField,
    StrictSerializer,
    errors,
)
from identities import selectors, services
from identities.api.instances import InstanceRegisterSerializer, InstanceSerializer, render_instance
from identities.models import Agent, AgentChange
from identities.oidc import register_attested_instance
from identities.validators import SCOPE_RE, SLUG_RE


class PendingChangeSerializer(serializers.ModelSerializer):
    """A wider ceiling or longer longest envelope waiting for an identity admin other than the
    requester: the whole values that approval puts in force."""

    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    ceiling = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = AgentChange
        fields = ["id", "ceiling", "max_envelope_seconds", "requested_by", "requested_at"]
        read_only_fields = fields


class AgentSerializer(serializers.ModelSerializer):
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True)
    instance_count = serializers.IntegerField(read_only=True, help_text="Instances that are not retired.")
    ceiling = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="The scopes in force (approved)."
    )
    pending_change = serializers.SerializerMethodField(
        help_text="null, or the ceiling and longest envelope waiting for an identity admin's approval."
    )

    class Meta:
        model = Agent
        fields = [
            "id",
            "slug",
            "name",
            "description",
            "owner",
            "status",
            "ceiling",
            "max_envelope_seconds",
            "created_at",
            "instance_count",
            "pending_change",
        ]
        read_only_fields = fields

    @extend_schema_field(PendingChangeSerializer(allow_null=True))
    def get_pending_change(self, agent: Agent) -> dict | None:
        change = services.pending_change_of(agent)
        return PendingChangeSerializer(change).data if change else None


def _ceiling_field(**kwargs):
    return serializers.ListField(
        child=StrictCharField(
            max_length=127, validators=[RegexValidator(SCOPE_RE, "not a scope of the form tool:action")]
        ),
        max_length=200,
        help_text="The scopes this agent may ever be granted, e.g. github:read.",
        **kwargs,
    )


def _max_envelope_seconds_field(**kwargs):
    return StrictIntegerField(
        min_value=60,
        max_value=settings.MANDATE_DEFAULT_MAX_ENVELOPE_SECONDS,
        help_text="The longest envelope this agent may hold, in seconds.",
        **kwargs,
    )


class AgentFilter(StrictFilterSet):
    status = django_filters.ChoiceFilter(choices=Agent.Status.choices)

    class Meta:
        model = Agent
        fields = ["status"]


class AgentCreateSerializer(StrictSerializer):
    slug = StrictCharField(
        max_length=63, validators=[RegexValidator(SLUG_RE, "lower-case letters, digits and hyphens")]
    )
    name = StrictCharField(max_length=200)
    description = StrictCharField(required=False, allow_blank=True, max_length=4000, default="")
    ceiling = _ceiling_field()
    max_envelope_seconds = _max_envelope_seconds_field()
    owner = StrictCharField(
        required=False, max_length=150, help_text="Username of the owner (identity admins only); default the caller."
    )

    def validate_owner(self, value: str):
        user = get_user_model().objects.filter(username=value, is_active=True).first()
        if user is None:
            raise serializers.ValidationError("no active user with this username")
        return user


class AgentUpdateSerializer(StrictSerializer):
    name = StrictCharField(required=False, max_length=200)
    description = StrictCharField(required=False, allow_blank=True, max_length=4000)
    ceiling = _ceiling_field(required=False)
    max_envelope_seconds = _max_envelope_seconds_field(required=False)


@extend_schema_view(
    list=extend_schema(
        summary="List the agents you may see", responses={200: AgentSerializer(many=True), **errors(400, 403)}
    ),
    retrieve=extend_schema(summary="One agent", responses={200: AgentSerializer, **errors(403, 404)}),
    create=extend_schema(
        summary="Register an agent",
        description="The agent starts with an empty `ceiling`; the requested ceiling is its `pending_change` until "
        "an identity admin other than the requester approves it.",
        request=AgentCreateSerializer,
        responses={201: AgentSerializer, **errors(400, 403)},
    ),
)
class AgentViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = AgentSerializer
    permission_classes = [IsAuthenticated, RolePermission]
    read_roles = (IDENTITY_ADMIN, AUDITOR, AGENT_OWNER)
    write_roles = (IDENTITY_ADMIN, AGENT_OWNER)
    lookup_field = "slug"
    lookup_value_regex = SLUG_PATH
    filterset_class = AgentFilter
    http_method_names = ["get", "post", "patch", "head", "options"]
    # PATCH (``partial_update``) is in ``tasks.api.lifecycle``: a narrowing revokes envelopes.

    def get_queryset(self):
        return selectors.agents_for(self.request.user).order_by("slug")

    def _render(self, agent: Agent, status_code: int = status.HTTP_200_OK) -> Response:
        fresh = selectors.agents_for(self.request.user).get(pk=agent.pk)
        return Response(AgentSerializer(fresh).data, status=status_code)

    def create(self, request, *args, **kwargs):
        body = AgentCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        agent = services.register_agent(actor=request.user, request=request, **body.validated_data)
        return self._render(agent, status.HTTP_201_CREATED)

    @extend_schema(
        summary="Approve the agent's pending change of ceiling or longest envelope",
        description="Identity admins other than the requester; puts the pending values in force.",
        request=CommentSerializer,
        responses={200: AgentSerializer, **errors(400, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"], url_path="pending-change/approve", url_name="approve-change")
    def approve_change(self, request, slug=None):
        return self._decide(request, services.approve_pending_change)

    @extend_schema(
        summary="Deny the agent's pending change of ceiling or longest envelope",
        description="Identity admins other than the requester; what is in force stays.",
        request=CommentSerializer,
        responses={200: AgentSerializer, **errors(400, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"], url_path="pending-change/deny", url_name="deny-change")
    def deny_change(self, request, slug=None):
        return self._decide(request, services.deny_pending_change)

    def _decide(self, request, decision):
        agent = self.get_object()
        body = CommentSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        agent = decision(agent=agent, actor=request.user, request=request, **body.validated_data)
        return self._render(agent)

    @extend_schema(
        summary="Register an instance of this agent with its own public key and/or a workload token",
        request=InstanceRegisterSerializer,
        responses={201: InstanceSerializer, **errors(400, 403, 404)},
    )
    @action(detail=True, methods=["post"], url_path="instances/", url_name="instances")
    def instances(self, request, slug=None):
        agent = self.get_object()
        body = InstanceRegisterSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if "workload_token" in body.validated_data:
            instance = register_attested_instance(
                agent=agent,
                actor=request.user,
                request=request,
                public_jwk=body.validated_data.get("public_jwk"),
                workload_token=body.validated_data["workload_token"],
                label=body.validated_data["label"],
            )
        else:
            instance = services.register_instance(
                agent=agent, actor=request.user, request=request, **body.validated_data
            )
        return render_instance(request, instance, status_code=status.HTTP_201_CREATED)
