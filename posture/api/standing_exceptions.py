"""``/api/v1/exceptions/``: the standing-exception register over REST.

Create, list and read; lifecycle verbs are POST actions (approve, recertify, renew, retire) calling
the same services as the console. A Mandate-issued secret appears in the create (or renew) answer
once and never again.
"""

from __future__ import annotations

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.roles import AGENT_OWNER, AUDITOR, IDENTITY_ADMIN, has_role
from core.api import (
    CommentSerializer,
    ReasonSerializer,
    RequiredCommentSerializer,
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    StrictSerializer,
    errors,
    text_field,
)
from identities.models import Agent
from identities.selectors import agents_for
from identities.validators import SCOPE_RE
from posture import standing_exceptions as services
from posture.models import MAX_STANDING_EXCEPTION_DAYS, StandingException


class ConsoleRole(permissions.BasePermission):
    message = "needs the identity-admin, agent-owner or auditor role"

    def has_permission(self, request, view):
        return has_role(request.user, IDENTITY_ADMIN, AGENT_OWNER, AUDITOR)


class ExceptionIn(StrictSerializer):
    vendor = text_field(max_length=200)
    justification = text_field(max_length=4000)
    compensating_controls = text_field(max_length=4000)
    scopes = serializers.ListField(
        child=serializers.CharField(
            max_length=130, validators=[RegexValidator(SCOPE_RE, "not a scope of the form tool:action")]
        ),
        allow_empty=False,
        max_length=100,
    )
    duration_days = StrictIntegerField(min_value=1, max_value=MAX_STANDING_EXCEPTION_DAYS)
    recertify_every_days = StrictIntegerField(min_value=1, max_value=MAX_STANDING_EXCEPTION_DAYS, required=False)
    agent = serializers.SlugField(required=False, allow_null=True, help_text="slug of the agent it serves")
    issue_secret = StrictBooleanField(required=False, default=False)


class RenewIn(StrictSerializer):
    duration_days = StrictIntegerField(min_value=1, max_value=MAX_STANDING_EXCEPTION_DAYS, required=False)
    justification = text_field(max_length=4000, required=False)
    compensating_controls = text_field(max_length=4000, required=False)


class RetireReason(ReasonSerializer):
    # The shared reason, bounded by the column it ends up in (StandingException.end_reason).
    reason = StrictCharField(required=False, allow_blank=True, max_length=500, default="")


class ExceptionOut(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.get_username", read_only=True)
    agent = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    requested_by = serializers.CharField(source="requested_by.get_username", read_only=True)
    approved_by = serializers.SerializerMethodField()
    has_secret = serializers.BooleanField(read_only=True)
    recertification_overdue = serializers.BooleanField(read_only=True)

    class Meta:
        model = StandingException
        fields = (
            "id",
            "vendor",
            "justification",
            "compensating_controls",
            "owner",
            "agent",
            "scopes",
            "status",
            "duration_days",
            "recertify_every_days",
            "requested_by",
            "approved_by",
            "approved_at",
            "expires_at",
            "recertify_by",
            "last_recertified_at",
            "recertification_overdue",
            "ended_at",
            "end_reason",
            "renews",
            "has_secret",
            "secret_prefix",
            "created_at",
        )
        read_only_fields = fields

    def get_approved_by(self, obj) -> str | None:
        return obj.approved_by.get_username() if obj.approved_by_id else None


class ExceptionWithSecretOut(ExceptionOut):
    secret = serializers.SerializerMethodField(help_text="the vendor secret, present only in this answer")

    class Meta(ExceptionOut.Meta):
        fields = (*ExceptionOut.Meta.fields, "secret")

    def get_secret(self, obj) -> str | None:
        return self.context.get("secret")


def _created(requested: services.Requested) -> Response:
    body = ExceptionWithSecretOut(requested.standing_exception, context={"secret": requested.secret}).data
    response = Response(body, status=status.HTTP_201_CREATED)
    response["Cache-Control"] = "no-store"
    return response


@extend_schema_view(
    list=extend_schema(
        summary="Standing exceptions the caller may see", responses={200: ExceptionOut(many=True), **errors(400, 403)}
    ),
    retrieve=extend_schema(summary="One standing exception", responses={200: ExceptionOut, **errors(403, 404)}),
    create=extend_schema(
        summary="Request a standing exception",
        request=ExceptionIn,
        responses={201: ExceptionWithSecretOut, **errors(400, 403)},
    ),
)
class ExceptionViewSet(viewsets.GenericViewSet):
    permission_classes = [permissions.IsAuthenticated, ConsoleRole]
    serializer_class = ExceptionOut
    lookup_value_regex = "[0-9a-fA-F-]{32,36}"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no caller
            return StandingException.objects.none()
        qs = services.standing_exceptions_for(self.request.user).order_by("-created_at")
        wanted = self.request.query_params.get("status")
        if wanted in StandingException.Status.values:
            qs = qs.filter(status=wanted)
        return qs

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(ExceptionOut(page, many=True).data)

    def retrieve(self, request, pk=None):
        return Response(ExceptionOut(self.get_object()).data)

    def create(self, request):
        data = ExceptionIn(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        slug = fields.pop("agent", None)
        agent = None
        if slug:
            agent = agents_for(request.user).filter(slug=slug).exclude(status=Agent.Status.RETIRED).first()
            if agent is None:
                raise serializers.ValidationError({"agent": ["no such agent you may see"]})
        return _created(services.request_standing_exception(actor=request.user, agent=agent, request=request, **fields))

    @extend_schema(
        summary="Approve (an identity admin other than the requester and the owner)",
        request=CommentSerializer,
        responses={200: ExceptionOut, **errors(400, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        data = CommentSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        exc = services.approve_standing_exception(
            standing_exception=self.get_object(),
            actor=request.user,
            comment=data.validated_data["comment"],
            request=request,
        )
        return Response(ExceptionOut(exc).data)

    @extend_schema(
        summary="Re-certify: the owner attests it is still needed",
        request=RequiredCommentSerializer,
        responses={200: ExceptionOut, **errors(400, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def recertify(self, request, pk=None):
        data = RequiredCommentSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        exc = services.recertify_standing_exception(
            standing_exception=self.get_object(),
            actor=request.user,
            comment=data.validated_data["comment"],
            request=request,
        )
        return Response(ExceptionOut(exc).data)

    @extend_schema(
        summary="Renew: a new pending exception that retires this one when approved",
        request=RenewIn,
        responses={201: ExceptionWithSecretOut, **errors(400, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def renew(self, request, pk=None):
        data = RenewIn(data=request.data)
        data.is_valid(raise_exception=True)
        return _created(
            services.renew_standing_exception(
                standing_exception=self.get_object(), actor=request.user, request=request, **data.validated_data
            )
        )

    @extend_schema(
        summary="Retire (withdraw or end); its secret stops being valid",
        request=RetireReason,
        responses={200: ExceptionOut, **errors(400, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def retire(self, request, pk=None):
        data = RetireReason(data=request.data)
        data.is_valid(raise_exception=True)
        exc = services.retire_standing_exception(
            standing_exception=self.get_object(),
            actor=request.user,
            reason=data.validated_data["reason"],
            request=request,
        )
        return Response(ExceptionOut(exc).data)
