"""``/api/v1/issuers/``: trusted OpenID Connect workload issuers. Admins write; admins and auditors
read. Writes go through ``identities/oidc.py`` (validated, audited)."""

from __future__ import annotations

import django_filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.roles import AUDITOR, IDENTITY_ADMIN, has_role
from core.api import StrictFilterSet, StrictSerializer, errors, typed_json
from identities import oidc
from identities.models_oidc import TrustedIssuer


class IssuerPermission(permissions.BasePermission):
    """Reading needs the admin or auditor role; changing needs the admin role."""

    message = "trusted issuers are managed by identity admins and read by auditors"

    def has_permission(self, request, view):
        if request.method in permissions.SAFE_METHODS:
            return has_role(request.user, IDENTITY_ADMIN, AUDITOR)
        return has_role(request.user, IDENTITY_ADMIN)


class IssuerSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = TrustedIssuer
        fields = [
            "id",
            "name",
            "issuer",
            "discovery_url",
            "jwks",
            "audience",
            "rules",
            "enabled",
            "keys_fetched_at",
            "keys_error",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


_URL = {"type": "string", "minLength": 1, "maxLength": 500, "format": "uri"}
_NAME = {"type": "string", "minLength": 1, "maxLength": 100, "pattern": r"\S"}
_AUDIENCE = {"type": "string", "minLength": 1, "maxLength": 500}
_JWKS = {
    "type": "object",
    "nullable": True,
    "properties": {"keys": {"type": "array", "minItems": 1, "items": {"type": "object"}}},
    "required": ["keys"],
}
_RULES = {
    "type": "array",
    "minItems": 1,
    "maxItems": 100,
    "items": {
        "type": "object",
        "properties": {
            "agent": {"type": "string", "pattern": r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"},
            "claims": {
                "type": "object",
                "minProperties": 1,
                "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 500},
            },
        },
        "required": ["agent", "claims"],
        "additionalProperties": False,
    },
}
_DISCOVERY = {**_URL, "minLength": 0, "nullable": True}


class IssuerCreateSerializer(StrictSerializer):
    # Types and shapes are checked by the service (it names the field); here only presence.
    name = typed_json(_NAME)
    issuer = typed_json(
        _URL,
        help_text="The exact `iss` of the workload tokens (https to a public address; see MANDATE_OUTBOUND_ALLOW).",
    )
    discovery_url = typed_json(
        _DISCOVERY,
        required=False,
        default="",
        allow_null=True,
        help_text="Default: <issuer>/.well-known/openid-configuration.",
    )
    jwks = typed_json(
        _JWKS, required=False, default=None, allow_null=True, help_text="A pinned JWK Set instead of discovery."
    )
    audience = typed_json(_AUDIENCE, help_text="The audience the tokens must carry.")
    rules = typed_json(_RULES, help_text='[{"agent": "<slug>", "claims": {"sub": "system:serviceaccount:ns:*"}}]')
    enabled = typed_json({"type": "boolean"}, required=False, default=True)


class IssuerUpdateSerializer(StrictSerializer):
    name = typed_json(_NAME, required=False)
    issuer = typed_json(_URL, required=False)
    discovery_url = typed_json(_DISCOVERY, required=False, allow_null=True)
    jwks = typed_json(_JWKS, required=False, allow_null=True)
    audience = typed_json(_AUDIENCE, required=False)
    rules = typed_json(_RULES, required=False)
    enabled = typed_json({"type": "boolean"}, required=False)


class IssuerFilter(StrictFilterSet):
    # "true" or "false" exactly; anything else is a 400 rather than no filter at all.
    enabled = django_filters.TypedChoiceFilter(
        choices=[("true", "true"), ("false", "false")], coerce=lambda value: value == "true"
    )

    class Meta:
        model = TrustedIssuer
        fields = ["enabled"]


@extend_schema_view(
    list=extend_schema(
        summary="List trusted workload issuers",
        parameters=[OpenApiParameter("enabled", OpenApiTypes.BOOL, description="`true` or `false`")],
        responses={200: IssuerSerializer(many=True), **errors(403)},
    ),
    retrieve=extend_schema(
        summary="One trusted workload issuer", responses={200: IssuerSerializer, **errors(403, 404)}
    ),
)
class IssuerViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = IssuerSerializer
    permission_classes = [permissions.IsAuthenticated, IssuerPermission]
    queryset = TrustedIssuer.objects.select_related("created_by").order_by("name")
    filterset_class = IssuerFilter

    @extend_schema(
        summary="Trust a workload issuer",
        request=IssuerCreateSerializer,
        responses={201: IssuerSerializer, **errors(400, 403)},
    )
    def create(self, request):
        data = IssuerCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        row = oidc.create_issuer(actor=request.user, request=request, **data.validated_data)
        return Response(IssuerSerializer(row).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Change a trusted workload issuer",
        request=IssuerUpdateSerializer,
        responses={200: IssuerSerializer, **errors(400, 403, 404)},
    )
    def partial_update(self, request, pk=None):
        data = IssuerUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        row = oidc.update_issuer(
            issuer=self.get_object(), actor=request.user, changes=dict(data.validated_data), request=request
        )
        return Response(IssuerSerializer(row).data)

    @extend_schema(
        summary="Stop trusting a workload issuer", request=None, responses={200: IssuerSerializer, **errors(403, 404)}
    )
    @action(detail=True, methods=["post"])
    def disable(self, request, pk=None):
        row = oidc.disable_issuer(issuer=self.get_object(), actor=request.user, request=request)
        return Response(IssuerSerializer(row).data)

    @extend_schema(
        summary="Trust a disabled workload issuer again",
        request=None,
        responses={200: IssuerSerializer, **errors(403, 404)},
    )
    @action(detail=True, methods=["post"])
    def enable(self, request, pk=None):
        row = oidc.update_issuer(
            issuer=self.get_object(), actor=request.user, changes={"enabled": True}, request=request
        )
        return Response(IssuerSerializer(row).data)
