"""Decisions and activity under ``/api/v1/`` (listed in ``console/api_urls.py`` before its catch-all).

The contract spells them ``POST /api/v1/decisions``, ``POST /api/v1/events`` and ``GET /api/v1/events/``;
every other collection ends in a slash, so both spellings of each path answer every method it has.
The schema documents the contract's spelling only (the aliases are plain functions it skips).
"""

from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from tasks.api.decisions import decisions_endpoint
from tasks.api.events import EventIngestView, EventListView

_ingest = EventIngestView.as_view()
_list = EventListView.as_view()


# What both spellings of the events path answer (console.middleware refuses the rest with 405).
_EVENTS_METHODS = ("GET", "HEAD", "POST", "OPTIONS")


@csrf_exempt  # each DRF view below does its own authentication and CSRF checks
def _events(request, *args, **kwargs):
    """Both spellings of the events path: POST reports a batch, anything else reads the record."""
    response = (_ingest if request.method == "POST" else _list)(request, *args, **kwargs)
    if request.method == "OPTIONS":
        response["Allow"] = ", ".join(_EVENTS_METHODS)
    return response


@csrf_exempt
def _decisions_alias(request, *args, **kwargs):
    return decisions_endpoint(request, *args, **kwargs)


def _documented_as(view, callback):
    """The dispatcher, described to drf-spectacular as ``view`` (it reads ``cls`` and ``initkwargs``)."""
    callback.cls, callback.initkwargs = view.cls, view.initkwargs
    callback.allowed_methods = _EVENTS_METHODS
    return callback


@csrf_exempt
def _events_ingest_path(request, *args, **kwargs):
    return _events(request, *args, **kwargs)


@csrf_exempt
def _events_list_path(request, *args, **kwargs):
    return _events(request, *args, **kwargs)


urlpatterns = [
    path("decisions", decisions_endpoint, name="decisions"),
    path("decisions/", _decisions_alias),
    path("events", _documented_as(_ingest, _events_ingest_path), name="events-ingest"),
    path("events/", _documented_as(_list, _events_list_path), name="events-list"),
]
