"""Console pages of the tasks app."""

from __future__ import annotations

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
    return render(request, "tasks/policy.html", {"summary": policy_summary()})
