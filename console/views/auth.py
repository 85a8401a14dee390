"""Sign in and out with Django's own session auth; the 403 page names what was missing."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate
from django.contrib.auth import views as auth_views
from django.http import HttpResponseRedirect
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from accounts.sessions import forget_session, record_sign_in
from console.views._common import console_view

SSO_SESSION_KEY = "mandate_sso"
SSO_ID_TOKEN_KEY = "mandate_sso_id_token"


class SignInView(auth_views.LoginView):
    template_name = "console/login.html"
    redirect_authenticated_user = True

    def form_valid(self, form):
        response = super().form_valid(form)
        record_sign_in(self.request, method="password")
        return response


class SignOutView(auth_views.LogoutView):
    """POST only (Django 5): a link cannot sign anyone out behind their back. A single sign-on
    session also ends at the provider when it advertises an ``end_session_endpoint``."""

    def post(self, request, *args, **kwargs):
        was_sso = bool(request.session.get(SSO_SESSION_KEY))
        id_token = request.session.get(SSO_ID_TOKEN_KEY, "")
        forget_session(request.session.session_key)
        response = super().post(request, *args, **kwargs)
        if was_sso and settings.MANDATE_OIDC_ENABLED:
            from console.sso import provider_logout_url  # loaded only when single sign-on is on

            target = provider_logout_url(request, id_token=id_token)
            if target:
                return HttpResponseRedirect(target)
        return response


@require_http_methods(["GET", "POST"])
@console_view()
def reauthenticate(request):
    """Step-up for password accounts: type the password again to confirm a sensitive action."""
    next_url = request.POST.get("next") or request.GET.get("next") or "/"
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = "/"
    error = ""
    if request.method == "POST":
        user = authenticate(request, username=request.user.get_username(), password=request.POST.get("password", ""))
        if user is not None and user.pk == request.user.pk:
            record_sign_in(request, method="password")
            messages.success(request, "Confirmed. You can go on.")
            return redirect(next_url)
        error = "That password is not right."
    return render(request, "console/reauthenticate.html", {"next": next_url, "error": error})


def forbidden(request, exception=None):
    message = str(exception) if exception and str(exception) else "You are not allowed to do this."
    return render(request, "403.html", {"message": message}, status=403)
