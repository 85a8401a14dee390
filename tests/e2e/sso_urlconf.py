"""The project's URLs with single sign-on switched on, for tests that turn it on by settings (the
real console/urls.py adds these only when MANDATE_OIDC_ENABLED is set at start-up)."""

from django.urls import NoReverseMatch, include, path, reverse

from console import urls as project_urls

urlpatterns = list(project_urls.urlpatterns)
try:
    reverse("oidc_authentication_init", urlconf=project_urls)
except NoReverseMatch:
    urlpatterns.append(path("oidc/", include("console.sso")))
