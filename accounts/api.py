"""``/api/v1/tokens/``: a person's own API tokens. The secret is in the creation answer only."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from accounts import services
from accounts.models import ApiToken
from accounts.selectors import api_tokens_of
from core.api import UUID_PATH, StrictCharField, StrictIntegerField, StrictSerializer, errors


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
