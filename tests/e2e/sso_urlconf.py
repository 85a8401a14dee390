"""The project's URLs with single sign-on switched on, for tests that turn it on by settings (the
real console/urls.py adds these only when MANDATE_OIDC_ENABLED is set at start-up).

Until the console's own sign-in page and dashboard exist, minimal stand-ins are served so the SSO
flow can be exercised; they give way to the real pages as soon as those are routed."""

from django.contrib.auth import views as auth_views
from django.http import HttpResponse
from django.template import engines
from django.urls import NoReverseMatch, include, path, reverse

from accounts.roles import roles_of
from console import urls as project_urls

urlpatterns = list(project_urls.urlpatterns)
try:
    reverse("oidc_authentication_init", urlconf=project_urls)
except NoReverseMatch:
    urlpatterns.append(path("oidc/", include("console.sso")))

_STAND_IN_LOGIN = (
    "<h1>Sign in</h1>{% for m in messages %}<p class='msg'>{{ m }}</p>{% endfor %}"
    "{% include 'console/_sso_login.html' %}"
)


class _StandInLogin(auth_views.LoginView):
    def get(self, request, *args, **kwargs):
        template = engines["django"].from_string(_STAND_IN_LOGIN)  # the engine of the current settings
        return HttpResponse(template.render(self.get_context_data(), request))


def _stand_in_dashboard(request):
    if not request.user.is_authenticated:
        return HttpResponse("signed out", status=401)
    return HttpResponse(
        f"<p id='who'>{request.user.get_username()}</p><p id='roles'>{' '.join(sorted(roles_of(request.user)))}</p>"
    )


for name, route, view in (("login", "login/", _StandInLogin.as_view()), ("dashboard", "", _stand_in_dashboard)):
    try:
        reverse(name, urlconf=project_urls)
    except NoReverseMatch:
        urlpatterns.append(path(route, view, name=name))
