"""Building blocks every API resource module uses: strict input fields, the router that spells our
paths, the error responses documented in the OpenAPI schema, and domain errors rendered as JSON.

Input is strict on purpose: a client that sends ``"60"`` for a number, ``1`` for a boolean or a
field we do not know gets a 400 naming the field instead of a guess.
"""

from __future__ import annotations

from collections.abc import Mapping

import django_filters
from django.core.validators import RegexValidator
from django.http import Http404
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.routers import DynamicRoute, SimpleRouter
from rest_framework.views import exception_handler as drf_exception_handler

from core.errors import DomainError

UUID_PATH = r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
SLUG_PATH = r"[a-z0-9-]{1,63}"


# --- strict fields -------------------------------------------------------------------------------


class StrictCharField(serializers.CharField):
    """A string and nothing else (DRF's CharField would turn ``12`` into ``"12"``)."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer: not a boolean, not a float, not a numeric string."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """``true`` or ``false``: not ``1``, not ``"yes"``."""

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictUUIDField(serializers.UUIDField):
    """A UUID written as a string (DRF would also take an integer)."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


def typed_json(schema: dict, **kwargs) -> serializers.JSONField:
    """A JSONField (the service checks the value and names the field) documented with ``schema``."""
    field_class = extend_schema_field(schema)(type("TypedJSONField", (serializers.JSONField,), {}))
    return field_class(**kwargs)


class StrictSerializer(serializers.Serializer):
    """An input serializer that refuses fields it does not know, naming them."""

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            unknown = sorted(str(key) for key in data if key not in self.fields)
            if unknown:
                raise serializers.ValidationError({key[:100]: ["unknown field"] for key in unknown})
        return super().to_internal_value(data)


class StrictSerializerSchema(OpenApiSerializerExtension):
    """Tells the OpenAPI document what StrictSerializer does: no fields beyond those described."""

    target_class = StrictSerializer
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_basic_serializer(self.target, direction)
        if direction == "request":
            schema["additionalProperties"] = False
            for name, field in self.target.fields.items():
                prop = schema.get("properties", {}).get(name)
                if prop is None or "$ref" in prop:
                    continue
                if isinstance(field, serializers.ListField | serializers.ListSerializer) and not field.allow_empty:
                    prop.setdefault("minItems", 1)  # DRF: "This list may not be empty."
        return schema


_NOT_BLANK = RegexValidator(r"\S", "may not be blank")


def text_field(*, max_length: int, **kwargs) -> StrictCharField:
    """A required string with something in it besides spaces (documented as a pattern)."""
    return StrictCharField(max_length=max_length, validators=[_NOT_BLANK], **kwargs)


class RequiredCommentSerializer(StrictSerializer):
    comment = text_field(max_length=2000, help_text="required here: say why")


class ReasonSerializer(StrictSerializer):
    reason = StrictCharField(required=False, allow_blank=True, max_length=2000, default="")


class CommentSerializer(StrictSerializer):
    comment = StrictCharField(required=False, allow_blank=True, max_length=2000, default="")


class StrictFilterSet(django_filters.FilterSet):
    """Query filters where an empty value is bad input (400 naming it) rather than "no filter": leave
    the parameter out to match everything."""

    def is_valid(self):
        valid = super().is_valid()
        for name in self.filters:
            if name in self.data and self.data.get(name) == "":
                self.form.add_error(name, "empty; leave the parameter out to match everything")
                valid = False
        return valid


# --- routing -------------------------------------------------------------------------------------


class ApiRouter(SimpleRouter):
    """Collections and objects end in ``/``, lifecycle verbs do not (``POST /agents/{slug}/pause``),
    exactly as the HTTP contract spells them. An action whose ``url_path`` ends in ``/`` keeps it."""

    routes = [
        route._replace(url=route.url.replace("{trailing_slash}", "")) if isinstance(route, DynamicRoute) else route
        for route in SimpleRouter.routes
    ]


# --- OpenAPI -------------------------------------------------------------------------------------


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField(required=False)


_ERROR_TEXT = {
    400: "Bad input; the body names each offending field.",
    401: "No valid credentials (send `Authorization: Bearer <api token>`).",
    403: "Authenticated, but your role or the separation of duties does not allow it.",
    404: "No such object, or not one you may see.",
    409: "The object's current state does not allow this.",
}


def errors(*codes: int) -> dict:
    """Documented error responses for ``extend_schema(responses={...})``; 401 is always included."""
    out = {}
    for code in sorted({401, *codes}):
        if code == 400:
            # {"field": ["message", ...], "detail"?: "...", "code"?: "..."}
            out[code] = OpenApiResponse(OpenApiTypes.OBJECT, description=_ERROR_TEXT[code])
        else:
            out[code] = OpenApiResponse(ErrorSerializer, description=_ERROR_TEXT[code])
    return out


# --- domain errors as JSON ----------------------------------------------------------------------


def domain_error_body(exc: DomainError) -> dict:
    """The JSON body of a refusal: the field named when there is one (also for plain views)."""
    if exc.field:
        return {exc.field: [exc.message], "detail": f"{exc.field}: {exc.message}", "code": exc.code}
    return {"detail": exc.message, "code": exc.code}


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return Response(domain_error_body(exc), status=exc.status_code)
    if isinstance(exc, Http404):
        return Response({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
    return drf_exception_handler(exc, context)
