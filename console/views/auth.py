"""Sign in and out with Django's own session auth; the 403 page names what was missing."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.shortcuts import render


class SignInView(auth_views.LoginView):
    template_name = "console/login.html"
    redirect_authenticated_user = True


class SignOutView(auth_views.LogoutView):
    """POST only (Django 5): a link cannot sign anyone out behind their back."""


def forbidden(request, exception=None):
    message = str(exception) if exception and str(exception) else "You are not allowed to do this."
    return render(request, "403.html", {"message": message}, status=403)
