from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from audit import well_known
from console import health, metrics

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path(".well-known/mandate-audit-keys.json", well_known.audit_keys, name="audit-keys"),
    path("metrics", metrics.metrics, name="metrics"),
    path("api/v1/", include("console.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    path("admin/", admin.site.urls),
    path("posture/", include("console.posture_urls")),
    path("", include("tasks.oauth_urls")),
    path("", include("tasks.urls")),
    path("", include("console.ui_urls")),
]

handler403 = "console.views.auth.forbidden"
handler500 = "console.outage.server_error_or_outage"

if settings.MANDATE_OIDC_ENABLED:  # single sign-on for people (console/sso.py)
    urlpatterns.append(path("oidc/", include("console.sso")))
