"""The posture pages: included from console/urls.py under /posture/."""

from django.urls import path

from console.views import posture

urlpatterns = [
    path("", posture.posture_page, name="posture"),
    path("rows/<slug:kind>/", posture.posture_rows, name="posture-rows"),
    path("envelopes/<uuid:pk>/narrow", posture.narrow_envelope, name="posture-narrow"),
    path("standards/", posture.standards_page, name="posture-standards"),
    path("standards/export", posture.standards_export, name="posture-standards-export"),
    path("verify/", posture.verify_page, name="posture-verify"),
    path("evidence/stream", posture.evidence_stream, name="posture-evidence-stream"),
    path("exports/", posture.export_start, name="posture-export-start"),
    path("exports/<uuid:pk>/", posture.export_status, name="posture-export-status"),
    path("exports/<uuid:pk>/download", posture.export_download, name="posture-export-download"),
    path("exceptions/", posture.exceptions_page, name="posture-exceptions"),
    path("exceptions/<uuid:pk>/<slug:verb>", posture.exception_action, name="posture-exception-action"),
]
