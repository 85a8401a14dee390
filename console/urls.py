from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from audit import well_known
from console import api_docs, health, metrics

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path(".well-known/mandate-audit-keys.json", well_known.audit_keys, name="audit-keys"),
    path("metrics", metrics.metrics, name="metrics"),
    path("api/v1/", include("console.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", api_docs.swagger_ui, name="api-docs"),
    path("api/redoc/", api_docs.redoc, name="api-redoc"),
    path("posture/", include("console.posture_urls")),
    path("", include("tasks.oauth_urls")),
    path("", include("tasks.urls")),
    path("", include("console.ui_urls")),
]

handler403 = "console.views.auth.forbidden"
handler500 = "console.outage.server_error_or_outage"

if settings.MANDATE_ADMIN_ENABLED:  # Django's admin site, off unless asked for
    urlpatterns.append(path("admin/", admin.site.urls))

if settings.MANDATE_OIDC_ENABLED:  # single sign-on for people (console/sso.py)
    urlpatterns.append(path("oidc/", include("console.sso")))
