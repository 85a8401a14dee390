"""Every REST resource under ``/api/v1/``, in one router."""

from console.api.audit import AuditViewSet
from console.api.common import ApiRouter
from console.api.tokens import ApiTokenViewSet
from identities.api.agents import AgentViewSet
from identities.api.instances import InstanceViewSet
from tasks.api.envelopes import EnvelopeViewSet

router = ApiRouter()
router.register("agents", AgentViewSet, basename="agent")
router.register("instances", InstanceViewSet, basename="instance")
router.register("envelopes", EnvelopeViewSet, basename="envelope")
router.register("audit", AuditViewSet, basename="audit")
router.register("tokens", ApiTokenViewSet, basename="token")

urlpatterns = router.urls
