"""At most MANDATE_MAX_CONCURRENT_EXPORTS (default 2) background evidence exports per person queued
or running at once; the next is refused with a clear message until one finishes."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from core.errors import DomainError
from posture import export
from posture.models import ExportJob

pytestmark = pytest.mark.django_db


@pytest.fixture
def busy_worker(monkeypatch, settings, tmp_path):
    """The worker has not picked anything up yet: started jobs stay queued."""
    settings.DATA_DIR = tmp_path
    monkeypatch.setattr(export, "_enqueue", lambda job_id: None)


def start(user):
    return export.start_export(user=user, kind="audit", fmt="jsonl")


def test_the_default_allows_two_at_once(settings):
    assert settings.MANDATE_MAX_CONCURRENT_EXPORTS == 2


def test_a_third_concurrent_export_is_refused_with_a_clear_message(busy_worker, auditor):
    start(auditor), start(auditor)

    with pytest.raises(DomainError) as refused:
        start(auditor)

    assert refused.value.status_code == 429
    assert "2 exports" in refused.value.message and "finish" in refused.value.message
    assert ExportJob.objects.filter(requested_by=auditor).count() == 2


def test_a_finished_export_frees_its_place(busy_worker, auditor):
    first, _ = start(auditor), start(auditor)
    ExportJob.objects.filter(pk=first.pk).update(status=ExportJob.Status.DONE, finished_at=timezone.now())

    assert start(auditor).status == ExportJob.Status.QUEUED


def test_a_failed_export_frees_its_place(busy_worker, auditor):
    first, _ = start(auditor), start(auditor)
    ExportJob.objects.filter(pk=first.pk).update(status=ExportJob.Status.FAILED)

    assert start(auditor).status == ExportJob.Status.QUEUED


def test_the_limit_is_per_person(busy_worker, auditor, admin):
    start(auditor), start(auditor)

    assert start(admin).status == ExportJob.Status.QUEUED


def test_a_job_a_lost_worker_left_behind_for_a_day_does_not_block_forever(busy_worker, auditor):
    old = timezone.now() - timedelta(days=1, minutes=1)
    for _ in range(2):
        ExportJob.objects.create(requested_by=auditor, kind="audit", format="jsonl", status="running", created_at=old)

    assert start(auditor).status == ExportJob.Status.QUEUED


def test_the_limit_is_configurable(busy_worker, auditor, settings):
    settings.MANDATE_MAX_CONCURRENT_EXPORTS = 1
    start(auditor)
    with pytest.raises(DomainError):
        start(auditor)


def test_the_console_says_why_the_third_is_refused(busy_worker, auditor):
    client = Client()
    client.force_login(auditor)
    url = reverse("posture-export-start")
    for _ in range(2):
        assert client.post(url, {"kind": "audit", "format": "jsonl"}, HTTP_HX_REQUEST="true").status_code == 200

    htmx = client.post(url, {"kind": "audit", "format": "jsonl"}, HTTP_HX_REQUEST="true")
    page = client.post(url, {"kind": "audit", "format": "jsonl"}, follow=True)

    assert htmx.status_code == 429 and "2 exports" in htmx.content.decode()
    assert "2 exports" in page.content.decode()
    assert ExportJob.objects.filter(requested_by=auditor).count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_starts_never_exceed_the_limit(busy_worker, auditor):
    outcomes: list[str] = []
    started = threading.Barrier(6)

    def try_start():
        started.wait()
        try:
            start(auditor)
            outcomes.append("started")
        except DomainError:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=try_start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["refused"] * 4 + ["started"] * 2
    assert ExportJob.objects.filter(requested_by=auditor).count() == 2
