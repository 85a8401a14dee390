"""Prometheus metrics at ``/metrics``.

Counters and histograms are incremented in process memory only (no query on the hot paths); under
gunicorn with several workers ``PROMETHEUS_MULTIPROC_DIR`` (set by gunicorn.conf.py) makes every
worker write its figures to files the scrape adds up. Figures that live in the database (live
credentials, pending approvals, the scheduled jobs' runs) are read once per scrape.

Who may read: an auditor's or identity admin's API token, or a client whose address (through
``MANDATE_TRUSTED_PROXIES``) is in ``MANDATE_METRICS_ALLOWED_IPS``. Never anyone else.
"""

from __future__ import annotations

import os
import time

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from core.client_address import address_in, client_address

# Counters live beside what they count (tasks/decisions.py, identities/oauth.py), so no lower layer
# imports this module; they all land in prometheus-client's one registry.
LATENCY = Histogram(
    "mandate_request_duration_seconds",
    "Time to answer the hot endpoints, by endpoint and status class.",
    ["endpoint", "status"],
    buckets=(0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

# Both spellings of a path count under the contract's spelling.
_HOT = {
    "/oauth/token": "token",
    "/oauth/introspect": "introspect",
    "/api/v1/decisions": "decisions",
    "/api/v1/decisions/": "decisions",
    "/api/v1/events": "events",
    "/api/v1/events/": "events",
    "/.well-known/jwks.json": "jwks",
}


class RequestLatencyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        endpoint = _HOT.get(request.path)
        if endpoint is None:
            return self.get_response(request)
        started = time.perf_counter()
        response = self.get_response(request)
        LATENCY.labels(endpoint, f"{response.status_code // 100}xx").observe(time.perf_counter() - started)
        return response


class DatabaseFigures:
    """Gauges read from the database at scrape time (a handful of indexed counts)."""

    def collect(self):
        from django.utils import timezone

        from audit.models import AuditCheckpoint
        from console.models import JobRun
        from identities.models import Credential
        from tasks.models import TaskEnvelope

        now = timezone.now()
        live = Credential.objects.filter(status=Credential.Status.ACTIVE, expires_at__gt=now).count()
        yield GaugeMetricFamily("mandate_live_credentials", "Credentials active and not past their expiry.", value=live)
        pending = TaskEnvelope.objects.filter(state=TaskEnvelope.State.PENDING).count()
        yield GaugeMetricFamily("mandate_pending_approvals", "Envelopes waiting for approval.", value=pending)

        # The newest signed checkpoint, and the newest one delivered to the external sink: an alert on
        # their age catches a stopped beat or a sink that refuses appends before the trail is disputed.
        newest = AuditCheckpoint.objects.order_by("-seq").values_list("at", flat=True).first()
        sunk = AuditCheckpoint.objects.filter(sunk_at__isnull=False).order_by("-seq").values_list("at", flat=True)
        sunk_at = sunk.first()
        for name, at, what in (
            ("mandate_audit_checkpoint_age_seconds", newest, "Seconds since the newest signed audit checkpoint."),
            (
                "mandate_audit_checkpoint_sunk_age_seconds",
                sunk_at,
                "Seconds since the newest audit checkpoint delivered to the external sink.",
            ),
        ):
            if at is not None:  # no checkpoint yet: absent rather than a misleading zero
                yield GaugeMetricFamily(name, what, value=(now - at).total_seconds())

        runs = CounterMetricFamily("mandate_job_runs", "Runs of each scheduled job.", labels=["job"])
        rows = CounterMetricFamily("mandate_job_rows", "Rows each scheduled job changed, summed.", labels=["job"])
        seconds = CounterMetricFamily("mandate_job_duration_seconds", "Time each job ran, summed.", labels=["job"])
        last = GaugeMetricFamily(
            "mandate_job_last_run_timestamp_seconds", "When each job last finished (Unix time).", labels=["job"]
        )
        last_duration = GaugeMetricFamily(
            "mandate_job_last_duration_seconds", "How long each job's last run took.", labels=["job"]
        )
        for job in JobRun.objects.all():
            runs.add_metric([job.name], job.runs)
            rows.add_metric([job.name], job.rows)
            seconds.add_metric([job.name], job.total_seconds)
            last.add_metric([job.name], job.last_finished_at.timestamp())
            last_duration.add_metric([job.name], job.last_seconds)
        yield from (runs, rows, seconds, last, last_duration)


def _exposition() -> bytes:
    db = CollectorRegistry(auto_describe=False)
    db.register(DatabaseFigures())
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry) + generate_latest(db)
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY) + generate_latest(db)


def _may_read(request) -> bool:
    if settings.MANDATE_METRICS_ALLOWED_IPS and address_in(
        client_address(request), settings.MANDATE_METRICS_ALLOWED_IPS
    ):
        return True
    from rest_framework.exceptions import AuthenticationFailed
    from rest_framework.request import Request

    from accounts.authentication import ApiTokenAuthentication
    from accounts.roles import AUDITOR, IDENTITY_ADMIN, has_role

    try:
        found = ApiTokenAuthentication().authenticate(Request(request))
    except AuthenticationFailed:
        return False
    return found is not None and has_role(found[0], AUDITOR, IDENTITY_ADMIN)


def metrics(request):
    """GET /metrics — Prometheus text format."""
    if not _may_read(request):
        response = JsonResponse(
            {
                "detail": "send an auditor's or identity admin's API token as 'Authorization: Bearer mdt_…', "
                "or scrape from an address in MANDATE_METRICS_ALLOWED_IPS",
                "code": "not_authenticated",
            },
            status=401,
        )
        response["WWW-Authenticate"] = "Bearer"
        return response
    return HttpResponse(_exposition(), content_type=CONTENT_TYPE_LATEST)
