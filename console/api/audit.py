"""``/api/v1/audit/``: read, export and verify the hash-chained audit trail."""

from __future__ import annotations

import json

import django_filters
from django.db.models import Q
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from accounts.permissions import RolePermission
from accounts.roles import AGENT_OWNER, AUDITOR, IDENTITY_ADMIN
from audit import services as audit
from audit.keys import public_jwk
from audit.models import PUBLISHED_FIELDS, AuditCheckpoint, AuditEvent, AuditJti, AuditSigningKey
from core.api import StrictFilterSet, errors
from core.csv_export import SafeWriter
from core.pagination import NewestFirstCursorPagination
from identities.selectors import audit_events_for

# The REST shape names the agent `agent`; otherwise the published row, in its order.
EXPORT_FIELDS = ["agent" if name == "agent_id" else name for name in PUBLISHED_FIELDS]


class AuditEventSerializer(serializers.ModelSerializer):
    agent = serializers.UUIDField(
        source="agent_id", read_only=True, allow_null=True, help_text="The agent the event concerns, if any."
    )
    before = serializers.JSONField(read_only=True, allow_null=True)
    after = serializers.JSONField(read_only=True, allow_null=True)

    class Meta:
        model = AuditEvent
        fields = EXPORT_FIELDS
        read_only_fields = fields


class VerifySerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    checked = serializers.IntegerField(help_text="Rows checked before the answer was known.")
    first_bad = serializers.DictField(allow_null=True, help_text="{id, chain, seq, problem} of the first bad row.")


class CheckpointSerializer(serializers.ModelSerializer):
    checkpoint = serializers.SerializerMethodField(help_text="The signed body: seq, at, reason, prev, kid, chains.")
    delivered_at = serializers.DateTimeField(source="sunk_at", allow_null=True, help_text="When the sink took it.")

    class Meta:
        model = AuditCheckpoint
        fields = ["seq", "at", "reason", "kid", "digest", "signature", "checkpoint", "delivered_at", "sink_error"]
        read_only_fields = fields

    def get_checkpoint(self, obj) -> dict:
        return json.loads(obj.body)


class AuditKeySetSerializer(serializers.Serializer):
    keys = serializers.ListField(child=serializers.DictField(), help_text="OKP Ed25519 JWKs with kid and status.")


def audit_key_set() -> dict:
    """The same document as /.well-known/mandate-audit-keys.json."""
    return {"keys": [public_jwk(key) for key in AuditSigningKey.objects.order_by("created_at")]}


def _bounded_int(raw, *, field: str, default: int, minimum: int = 1, maximum: int | None = None) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError({field: ["a whole number"]}) from None
    if value < minimum or (maximum is not None and value > maximum):
        raise ValidationError({field: [f"from {minimum}" + (f" to {maximum}" if maximum else "")]})
    return value


class AuditFilter(StrictFilterSet):
    actor = django_filters.CharFilter(
        field_name="actor", max_length=255, help_text="Who acted: a username, a SPIFFE ID, a policy rule or a job."
    )
    verb = django_filters.CharFilter(field_name="verb", max_length=64, help_text="A dotted verb, e.g. agent.paused.")
    target = django_filters.CharFilter(
        method="filter_target", max_length=170, help_text="The target's id, or type:id (e.g. agent:<uuid>)."
    )
    since = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="gte", help_text="ISO 8601 time.")

    class Meta:
        model = AuditEvent
        fields = ["actor", "verb", "target", "since"]

    def filter_target(self, queryset, name, value):
        target_type, sep, target_id = value.partition(":")
        if sep and target_type and target_id and ":" not in target_type and not target_type.startswith("spiffe"):
            if target_type == "credential":
                return queryset.filter(Q(target_type=target_type, target_id=target_id) | _chunk_events_of(target_id))
            return queryset.filter(target_type=target_type, target_id=target_id)
        return queryset.filter(Q(target_id=value) | _chunk_events_of(value))


def _chunk_events_of(jti: str) -> Q:
    """Events that list this credential among many (``credentials.expired``), through the jti index."""
    return Q(id__in=AuditJti.objects.filter(jti=jti).values("event_id"))


@extend_schema_view(
    list=extend_schema(
        summary="Read the audit trail, newest first",
        responses={200: AuditEventSerializer(many=True), **errors(400, 403)},
    ),
)
class AuditViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = AuditEventSerializer
    permission_classes = [IsAuthenticated, RolePermission]
    read_roles = (IDENTITY_ADMIN, AUDITOR, AGENT_OWNER)
    write_roles = ()
    filterset_class = AuditFilter
    pagination_class = NewestFirstCursorPagination

    def get_queryset(self):
        return audit_events_for(self.request.user)

    def perform_content_negotiation(self, request, force=False):
        # On the export, ?format= names the export format, not one of DRF's renderers.
        if self.action == "export":
            renderer = JSONRenderer()
            return renderer, renderer.media_type
        return super().perform_content_negotiation(request, force=force)

    @extend_schema(
        summary="Export the audit trail you may read, oldest first, as JSON Lines or CSV (streamed)",
        parameters=[OpenApiParameter("format", OpenApiTypes.STR, enum=["jsonl", "csv"], default="jsonl")],
        responses={
            (200, "application/jsonl"): OpenApiResponse(OpenApiTypes.STR, description="One event per line."),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="A header row, then one event per row."),
            **errors(400, 403),
        },
    )
    @action(detail=False, methods=["get"], pagination_class=None)
    def export(self, request):
        kind = request.query_params.get("format", "jsonl")
        if kind not in ("jsonl", "csv"):
            raise ValidationError({"format": ["one of jsonl, csv"]})
        rows = self.filter_queryset(self.get_queryset()).order_by("id").iterator(chunk_size=2000)
        if kind == "csv":
            response = StreamingHttpResponse(_csv_lines(rows), content_type="text/csv; charset=utf-8")
        else:
            response = StreamingHttpResponse(_jsonl_lines(rows), content_type="application/jsonl; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="mandate-audit.{kind}"'
        return response

    @extend_schema(summary="Verify every hash chain of the trail", responses={200: VerifySerializer, **errors(403)})
    @action(detail=False, methods=["get"])
    def verify(self, request):
        result = audit.verify_chain()
        return Response({"ok": result.ok, "checked": result.checked, "first_bad": result.first_bad})

    @extend_schema(
        summary="Signed audit checkpoints, newest first (for auditors: verify them with the audit keys)",
        parameters=[
            OpenApiParameter(
                "after", {"type": "integer", "minimum": 0}, description="Only checkpoints with a greater seq."
            ),
            OpenApiParameter(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": 500},
                description="At most this many (1-500, default 100).",
            ),
        ],
        responses={200: CheckpointSerializer(many=True), **errors(400, 403)},
    )
    @action(detail=False, methods=["get"], pagination_class=None, filterset_class=None)
    def checkpoints(self, request):
        limit = _bounded_int(request.query_params.get("limit"), field="limit", default=100, maximum=500)
        after = _bounded_int(request.query_params.get("after"), field="after", default=0, minimum=0)
        rows = AuditCheckpoint.objects.filter(seq__gt=after).order_by("-seq")[:limit]
        return Response(CheckpointSerializer(rows, many=True).data)

    @extend_schema(
        summary="The public keys that sign audit checkpoints (Ed25519 JWKs; never credential keys)",
        responses={200: AuditKeySetSerializer, **errors(403)},
    )
    @action(detail=False, methods=["get"], pagination_class=None, filterset_class=None)
    def keys(self, request):
        return Response(audit_key_set())

    def get_permissions(self):
        if self.action in ("checkpoints", "keys"):
            self.read_roles = (IDENTITY_ADMIN, AUDITOR)
        if self.action == "verify":
            # Verifying walks every chain, so it is for those who may read every chain.
            self.read_roles = (IDENTITY_ADMIN, AUDITOR)
        return super().get_permissions()


def _as_row(event: AuditEvent) -> dict:
    return AuditEventSerializer(event).data


def _jsonl_lines(rows):
    for event in rows:
        yield json.dumps(_as_row(event), ensure_ascii=False, sort_keys=True) + "\n"


def _csv_lines(rows):
    writer = SafeWriter()  # escapes formula cells (CSV injection)
    yield writer.line(EXPORT_FIELDS)
    for event in rows:
        row = _as_row(event)
        yield writer.line(
            json.dumps(row[field], ensure_ascii=False, sort_keys=True) if field in ("before", "after") else row[field]
            for field in EXPORT_FIELDS
        )
