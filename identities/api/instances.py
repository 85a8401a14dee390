"""``/api/v1/instances/``: running copies of an agent, each with its own key and SPIFFE ID.

Registration lives on the agent (``POST /api/v1/agents/{slug}/instances/``, see ``agents.py``) and
uses ``InstanceCreateSerializer`` from here.
"""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from accounts.permissions import RolePermission
from accounts.roles import AGENT_OWNER, AUDITOR, IDENTITY_ADMIN
from core.api import UUID_PATH, StrictCharField, StrictFilterSet, StrictSerializer, errors
from identities import selectors, services
from identities.jwk import ACCEPTED
from identities.models import Instance


class InstanceSerializer(serializers.ModelSerializer):
    agent = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    spiffe_id = serializers.CharField(read_only=True)
    parent = serializers.UUIDField(source="parent_id", read_only=True, allow_null=True)
    public_jwk = serializers.JSONField(read_only=True, allow_null=True)

    class Meta:
        model = Instance
        fields = [
            "id",
            "agent",
            "spiffe_id",
            "status",
            "origin",
            "parent",
            "public_jwk",
            "label",
            "created_at",
            "last_seen_at",
            "stale",
        ]
        read_only_fields = fields


# DRF formats error messages with str.format: the example's braces are doubled to survive it.
_NOT_A_JWK = "must be a JSON object (a JWK); " + ACCEPTED.replace("{", "{{").replace("}", "}}")


class InstanceCreateSerializer(StrictSerializer):
    public_jwk = serializers.DictField(
        help_text="The instance's public key as a JWK: OKP Ed25519 or EC P-256, public members only.",
        error_messages={"not_a_dict": _NOT_A_JWK},
    )
    label = StrictCharField(required=False, allow_blank=True, max_length=200, default="")


class InstanceRegisterSerializer(InstanceCreateSerializer):
    """Registration may present a workload token from a trusted issuer with, or instead of, a key."""

    public_jwk = serializers.DictField(
        required=False,
        help_text="The instance's public key as a JWK (optional with a workload token).",
        error_messages={"not_a_dict": _NOT_A_JWK},
    )
    workload_token = StrictCharField(
        required=False,
        max_length=16384,
        write_only=True,
        help_text="A token from a trusted OpenID Connect workload issuer (see /api/v1/issuers/) whose rules "
        "bind it to this agent; the instance records the issuer and subject.",
    )

    def validate(self, attrs):
        if "public_jwk" not in attrs and "workload_token" not in attrs:
            raise serializers.ValidationError({"public_jwk": ["send public_jwk, workload_token, or both"]})
        return attrs


class InstanceFilter(StrictFilterSet):
    agent = django_filters.CharFilter(field_name="agent__slug", max_length=63, help_text="Agent slug.")
    status = django_filters.ChoiceFilter(choices=Instance.Status.choices)

    class Meta:
        model = Instance
        fields = ["agent", "status"]


def render_instance(request, instance: Instance, *, status_code: int = status.HTTP_200_OK) -> Response:
    """Read the instance back through the caller's selector, so the answer is what they may see."""
    fresh = selectors.instances_for(request.user).get(pk=instance.pk)
    return Response(InstanceSerializer(fresh).data, status=status_code)


@extend_schema_view(
    list=extend_schema(
        summary="List the instances you may see", responses={200: InstanceSerializer(many=True), **errors(400, 403)}
    ),
    retrieve=extend_schema(summary="One instance", responses={200: InstanceSerializer, **errors(403, 404)}),
)
class InstanceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = InstanceSerializer
    permission_classes = [IsAuthenticated, RolePermission]
    read_roles = (IDENTITY_ADMIN, AUDITOR, AGENT_OWNER)
    write_roles = (IDENTITY_ADMIN, AGENT_OWNER)
    filterset_class = InstanceFilter
    lookup_value_regex = UUID_PATH

    def get_queryset(self):
        return selectors.instances_for(self.request.user).order_by("-created_at", "id")

    @extend_schema(
        summary="Clone an instance: a new identity with its own key that inherits no access",
        request=InstanceCreateSerializer,
        responses={201: InstanceSerializer, **errors(400, 403, 404)},
    )
    @action(detail=True, methods=["post"])
    def clone(self, request, pk=None):
        parent = self.get_object()
        body = InstanceCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        clone = services.clone_instance(parent=parent, actor=request.user, request=request, **body.validated_data)
        return render_instance(request, clone, status_code=status.HTTP_201_CREATED)
