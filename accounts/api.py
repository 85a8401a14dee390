"""``/api/v1/tokens/``: a person's own API tokens. The secret is in the creation answer only.
``/api/v1/gateways/``: gateways and the audiences they serve (identity admins change them)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from accounts import services
from accounts.models import ApiToken
from accounts.permissions import RolePermission
from accounts.roles import AUDITOR, IDENTITY_ADMIN
from accounts.selectors import api_tokens_of, gateway_audiences, gateways
from core.api import UUID_PATH, StrictCharField, StrictIntegerField, StrictSerializer, errors
from core.audiences import AUDIENCE_VALIDATOR, MAX_AUDIENCE_CHARS, MAX_AUDIENCES, default_audience


class ApiTokenSerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(choices=["active", "expired", "revoked"], read_only=True)

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "status", "created_at", "expires_at", "revoked_at", "last_used_at"]
        read_only_fields = fields


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    token = serializers.CharField(read_only=True, help_text="The secret. Shown this once; only a hash is kept.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]
        read_only_fields = fields


class ApiTokenCreateSerializer(StrictSerializer):
    name = StrictCharField(required=False, allow_blank=True, max_length=100, default="")
    expires_days = StrictIntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=1,
        max_value=services.MAX_TOKEN_DAYS,
        help_text="Days until it expires; none: never.",
    )


@extend_schema_view(
    list=extend_schema(summary="List your API tokens", responses={200: ApiTokenSerializer(many=True), **errors(400)}),
    create=extend_schema(
        summary="Create an API token (its secret is shown once)",
        request=ApiTokenCreateSerializer,
        responses={201: ApiTokenCreatedSerializer, **errors(400)},
    ),
)
class ApiTokenViewSet(mixins.ListModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet):
    serializer_class = ApiTokenSerializer
    permission_classes = [IsAuthenticated]
    lookup_value_regex = UUID_PATH

    def get_queryset(self):
        return api_tokens_of(self.request.user).order_by("-created_at", "id")

    def create(self, request, *args, **kwargs):
        body = ApiTokenCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        issued = services.create_api_token(
            user=request.user, actor=request.user, request=request, **body.validated_data
        )
        data = ApiTokenCreatedSerializer(issued.token).data
        data["token"] = issued.secret
        response = Response(data, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response

    @extend_schema(
        summary="Revoke one of your API tokens", request=None, responses={200: ApiTokenSerializer, **errors(404)}
    )
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        token = services.revoke_api_token(token=self.get_object(), actor=request.user, request=request)
        return Response(ApiTokenSerializer(token).data)


# --- gateways and the audiences they serve -------------------------------------------------------


class GatewaySerializer(serializers.Serializer):
    username = serializers.CharField(read_only=True)
    audiences = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="The audiences the gateway declared; empty when it declared none.",
    )
    serves = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="What its decisions accept as a credential's aud: its audiences, or the deployment's "
        "default audience when it declared none. Any other aud is denied audience_mismatch.",
    )


class GatewayAudiencesSerializer(StrictSerializer):
    audiences = serializers.ListField(
        child=StrictCharField(max_length=MAX_AUDIENCE_CHARS, validators=[AUDIENCE_VALIDATOR]),
        max_length=MAX_AUDIENCES,
        allow_empty=True,
        help_text="Exactly the audiences the gateway serves from now on: absolute https URLs (http only on a "
        "loopback address in development) or audience names. Empty: the deployment's default audience.",
    )


def _gateway_answer(user, declared: list[str]) -> dict:
    return {"username": user.get_username(), "audiences": declared, "serves": declared or [default_audience()]}


@extend_schema_view(
    list=extend_schema(
        summary="List gateways and the audiences they serve (identity admins, auditors)",
        responses={200: GatewaySerializer(many=True), **errors(403)},
    ),
)
class GatewayViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """``/api/v1/gateways/``: users with the gateway role, and the audiences each serves."""

    serializer_class = GatewaySerializer
    permission_classes = [IsAuthenticated, RolePermission]
    read_roles = (IDENTITY_ADMIN, AUDITOR)
    write_roles = (IDENTITY_ADMIN,)
    lookup_field = "username"
    lookup_value_regex = r"[\w.@+-]{1,150}"
    pagination_class = None

    def get_queryset(self):
        return gateways()

    def list(self, request, *args, **kwargs):
        users = self.get_queryset().prefetch_related("gateway_audiences")
        return Response([_gateway_answer(u, [a.audience for a in u.gateway_audiences.all()]) for u in users])

    @extend_schema(
        methods=["GET"],
        summary="The audiences one gateway serves",
        responses={200: GatewaySerializer, **errors(403, 404)},
    )
    @extend_schema(
        methods=["PUT"],
        summary="Set the audiences one gateway serves (identity admins; audited; decisions see it at once)",
        request=GatewayAudiencesSerializer,
        responses={200: GatewaySerializer, **errors(400, 403, 404)},
    )
    @action(detail=True, methods=["get", "put"], url_path="audiences")
    def audiences(self, request, username=None):
        user = self.get_object()
        if request.method == "PUT":
            body = GatewayAudiencesSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            services.set_gateway_audiences(
                user=user, audiences=body.validated_data["audiences"], actor=request.user, request=request
            )
        return Response(_gateway_answer(user, gateway_audiences(user)))
