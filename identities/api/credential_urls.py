"""Routes for ``/api/v1/credentials/`` until the shared API router takes them over."""

from rest_framework.routers import DefaultRouter

from identities.api.credentials import CredentialViewSet

# Optional slash: the contract writes lists with one (/credentials/) and verbs without (/revoke).
router = DefaultRouter()
router.trailing_slash = "/?"
router.include_root_view = False
router.register("credentials", CredentialViewSet, basename="credential")

urlpatterns = router.urls
