"""Decisions and activity under ``/api/v1/`` (listed in ``console/api_urls.py`` before its catch-all).

``POST /api/v1/events`` and ``GET /api/v1/events/`` are two views: the contract spells them so."""

from django.urls import path

from tasks.api.decisions import decisions_endpoint
from tasks.api.events import EventIngestView, EventListView

urlpatterns = [
    path("decisions", decisions_endpoint, name="decisions"),
    path("events", EventIngestView.as_view(), name="events-ingest"),
    path("events/", EventListView.as_view(), name="events-list"),
]
