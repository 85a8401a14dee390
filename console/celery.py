"""The Celery app: configured from Django settings (CELERY_* names), jobs autodiscovered (``<app>/jobs.py``)."""

import os
import sys
from pathlib import Path

from celery import Celery

from console.development import load_development_settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
# A worker or beat started by hand after `make run` uses the same development settings. Only the
# celery command does: a web server imports this module too and must never read that file.
if Path(sys.argv[0]).name in {"celery", "__main__.py"} and "celery" in sys.argv[0]:
    load_development_settings(Path(__file__).resolve().parent.parent)

app = Celery("mandate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(related_name="jobs")


def _connect_job_recorder() -> None:
    from celery.signals import task_postrun, task_prerun

    from console import job_runs

    task_prerun.connect(job_runs.task_started, weak=False)
    task_postrun.connect(job_runs.task_finished, weak=False)


_connect_job_recorder()
