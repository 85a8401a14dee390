"""Console pages of the tasks app."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import render

from accounts.roles import can_read_all
from tasks.policy import policy_summary


@login_required
def policy_page(request):
    """The running policy, read-only, for identity admins and auditors."""
    if not can_read_all(request.user):
        raise PermissionDenied("the policy page is for identity admins and auditors")
    return render(request, "tasks/policy.html", {"summary": policy_summary(), "limits": deployment_limits()})


def deployment_limits() -> list[dict]:
    """The limits a deployment sets in its environment, for the policy page beside the policy's own."""
    return [
        {"label": label, "value": getattr(settings, name), "setting": name}
        for label, name in (
            ("Wrong passwords (one account, one address) before sign-in locks", "MANDATE_LOGIN_FAILURE_LIMIT"),
            ("Sign-in lockout, minutes", "MANDATE_LOGIN_LOCKOUT_MINUTES"),
            ("Token requests a minute per client address", "MANDATE_RATE_TOKEN_PER_ADDRESS"),
            ("Token requests a minute per verified instance", "MANDATE_RATE_TOKEN_PER_CLIENT"),
            ("Introspection requests a minute per client address", "MANDATE_RATE_INTROSPECT_PER_ADDRESS"),
            ("Introspection requests a minute per API token's user", "MANDATE_RATE_INTROSPECT_PER_CLIENT"),
            ("Background evidence exports at once per person", "MANDATE_MAX_CONCURRENT_EXPORTS"),
        )
    ]
