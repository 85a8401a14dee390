"""The landing page: what needs a person now, scoped to whoever is looking."""

from __future__ import annotations

from datetime import timedelta

from django.shortcuts import render
from django.utils import timezone

from accounts.roles import is_admin
from console.views._common import console_view
from identities.models import Credential, Instance
from identities.selectors import credentials_for, instances_for
from tasks.models import TaskEnvelope
from tasks.selectors import activity_for, envelopes_for, pending_breakdown

ENDING_SOON = timedelta(hours=1)
DRIFT_WINDOW = timedelta(hours=24)
SHOWN = 8


@console_view()
def dashboard(request):
    user = request.user
    now = timezone.now()
    # The dashboard shows no approvals, so the selector's approvals prefetch is dropped here.
    envelopes = envelopes_for(user).select_related("instance__agent").prefetch_related(None)
    pending = envelopes.filter(state=TaskEnvelope.State.PENDING)
    live_credentials = credentials_for(user).filter(status=Credential.Status.ACTIVE, expires_at__gt=now)
    # Lists stop at SHOWN + 1 rows so the page never counts a big table: "8+" is enough to act on.
    # Newest drift first by when it happened (reported events can arrive late, so ids are not
    # time order); drift is rare, so the window reads few rows (activity_drift_idx).
    drift = list(
        activity_for(user)
        .filter(drift=True, occurred_at__gte=now - DRIFT_WINDOW)
        .order_by("-occurred_at", "-id")[: SHOWN + 1]
    )
    breakdown = pending_breakdown(user)
    context = {
        "pending_count": breakdown["total"],
        "pending": breakdown,
        "oldest_pending": list(pending.order_by("created_at", "id")[:SHOWN]),
        "live_credential_count": live_credentials.count(),
        "live_credentials": list(live_credentials.order_by("expires_at")[:SHOWN]),
        "ending_soon": list(
            envelopes.filter(
                state__in=TaskEnvelope.LIVE_STATES, expires_at__gt=now, expires_at__lte=now + ENDING_SOON
            ).order_by("expires_at")[:SHOWN]
        ),
        "stale_instances": list(
            instances_for(user).filter(stale=True, status=Instance.Status.ACTIVE).order_by("stale_since")[:SHOWN]
        ),
        "drift": drift[:SHOWN],
        "drift_more": len(drift) > SHOWN,
        "admin": is_admin(user),
    }
    return render(request, "console/dashboard.html", context)
