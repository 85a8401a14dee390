"""Decisions and activity under ``/api/v1/`` (merged into the API router once it exists)."""

from django.urls import path

from tasks.api.decisions import DecisionView
from tasks.api.events import EventIngestView, EventListView

urlpatterns = [
    path("decisions", DecisionView.as_view(), name="decisions"),
    path("events", EventIngestView.as_view(), name="events-ingest"),
    path("events/", EventListView.as_view(), name="events-list"),
]
