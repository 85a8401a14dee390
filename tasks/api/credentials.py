"""``/api/v1/credentials/``: list the credentials the caller may see, and revoke one.

The token itself is never stored, so it is never shown: only ``jti``, times, scopes and status.
"""

from __future__ import annotations

import django_filters
from django.db.models import Q
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from accounts.permissions import RolePermission
from accounts.roles import AGENT_OWNER, AUDITOR, IDENTITY_ADMIN
from core.api import ReasonSerializer, StrictFilterSet, errors
from identities.models import Credential
from identities.selectors import credentials_for
from tasks.lifecycle import revoke_credential

STATUS_CHOICES = [(s, s) for s in ("active", "expired", "revoked")]


class CredentialSerializer(serializers.ModelSerializer):
    instance = serializers.UUIDField(source="instance_id", read_only=True)
    envelope = serializers.UUIDField(source="envelope_id", read_only=True)
    parent_jti = serializers.CharField(source="parent_id", read_only=True, allow_null=True)
    status = serializers.SerializerMethodField()

    class Meta:
        model = Credential
        fields = [
            "jti",
            "instance",
            "envelope",
            "scopes",
            "audience",
            "issued_at",
            "expires_at",
            "status",
            "revoked_at",
            "revoke_reason",
            "kid",
            "parent_jti",
        ]
        read_only_fields = fields

    def get_status(self, credential: Credential) -> str:
        # The expiry sweep may not have run yet: a credential past its exp is expired all the same.
        if credential.status == Credential.Status.ACTIVE and credential.expires_at <= timezone.now():
            return Credential.Status.EXPIRED
        return credential.status


class CredentialFilter(StrictFilterSet):
    instance = django_filters.UUIDFilter(field_name="instance_id")
    envelope = django_filters.UUIDFilter(field_name="envelope_id")
    status = django_filters.ChoiceFilter(choices=STATUS_CHOICES, method="filter_status")

    class Meta:
        model = Credential
        fields = ["instance", "envelope", "status"]

    def filter_status(self, queryset, name, value):
        now = timezone.now()
        live = Q(status=Credential.Status.ACTIVE)
        if value == "active":
            return queryset.filter(live, expires_at__gt=now)
        if value == "expired":
            return queryset.filter(Q(status=Credential.Status.EXPIRED) | (live & Q(expires_at__lte=now)))
        return queryset.filter(status=Credential.Status.REVOKED)


@extend_schema_view(
    list=extend_schema(
        summary="List the credentials you may see (never the tokens)",
        responses={200: CredentialSerializer(many=True), **errors(400, 403)},
    ),
    retrieve=extend_schema(summary="One credential, by jti", responses={200: CredentialSerializer, **errors(403, 404)}),
)
class CredentialViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Credentials by ``jti``: admins and auditors see all, owners their agents' only."""

    serializer_class = CredentialSerializer
    permission_classes = [IsAuthenticated, RolePermission]
    read_roles = (IDENTITY_ADMIN, AUDITOR, AGENT_OWNER)
    write_roles = (IDENTITY_ADMIN, AGENT_OWNER)
    filterset_class = CredentialFilter
    lookup_field = "jti"
    lookup_value_regex = r"[A-Za-z0-9_-]{1,64}"

    def get_queryset(self):
        return credentials_for(self.request.user).order_by("-issued_at", "jti")

    @extend_schema(
        summary="Revoke a credential and every credential delegated from it (owner or admin)",
        request=ReasonSerializer,
        responses={200: CredentialSerializer, **errors(400, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def revoke(self, request, jti=None):
        credential = self.get_object()
        body = ReasonSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        credential = revoke_credential(
            credential=credential, actor=request.user, reason=body.validated_data["reason"], request=request
        )
        return Response(CredentialSerializer(credential).data)
