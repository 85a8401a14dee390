"""Decisions and activity under ``/api/v1/`` (merged into the API router once it exists)."""

from django.urls import path

from tasks.api.decisions import DecisionView

urlpatterns = [
    path("decisions", DecisionView.as_view(), name="decisions"),
]
