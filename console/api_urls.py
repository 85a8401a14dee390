"""Every REST resource under ``/api/v1/``, in one router."""

from django.http import JsonResponse
from django.urls import re_path
from django.views.decorators.csrf import csrf_exempt

from accounts.api import ApiTokenViewSet, GatewayViewSet
from console.api.audit import AuditViewSet
from core.api import ApiRouter
from identities.api.issuers import IssuerViewSet
from posture.api.standing_exceptions import ExceptionViewSet
from tasks.api.credentials import CredentialViewSet
from tasks.api.envelopes import EnvelopeViewSet
from tasks.api.lifecycle import AgentViewSet, InstanceViewSet
from tasks.api.urls import urlpatterns as decision_and_activity_urls

router = ApiRouter()
router.register("agents", AgentViewSet, basename="agent")
router.register("instances", InstanceViewSet, basename="instance")
router.register("envelopes", EnvelopeViewSet, basename="envelope")
router.register("credentials", CredentialViewSet, basename="credential")
router.register("audit", AuditViewSet, basename="audit")
router.register("tokens", ApiTokenViewSet, basename="token")
router.register("exceptions", ExceptionViewSet, basename="exception")
router.register("issuers", IssuerViewSet, basename="issuer")
router.register("gateways", GatewayViewSet, basename="gateway")


@csrf_exempt  # it changes nothing; a CSRF refusal would answer HTML instead
def api_not_found(request, *args, **kwargs):
    """API clients get JSON for a path that names nothing (an id that is not a UUID, say), never
    the HTML page meant for browsers."""
    return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)


# Register new resources on the router above (or insert paths before the catch-all): anything
# placed after it under /api/v1/ would never be reached. Decisions and events come first: Django
# tries patterns in order, and every router pattern tried before them cost each decision CPU.
urlpatterns = [*decision_and_activity_urls, *router.urls, re_path(r"", api_not_found)]
