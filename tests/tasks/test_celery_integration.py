"""A real Celery worker and a real beat, as separate processes on Redis, expire a short-lived
credential and write its audit event with nobody making a request."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from urllib.parse import urlparse

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from audit.models import AuditEvent
from identities.models import Credential
from tasks import services
from tests.helpers.factories import make_agent, make_envelope, make_instance

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

DEFAULT_REDIS = "redis://127.0.0.1:6379/3"


def _redis_url() -> str:
    url = os.environ.get("CELERY_BROKER_URL", "")
    return url if url.startswith("redis://") else DEFAULT_REDIS


def _redis_answers(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _database_url_of_the_test_database() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    if connection.vendor == "postgresql":
        auth = db["USER"] or ""
        if db.get("PASSWORD"):
            auth += f":{db['PASSWORD']}"
        host = f"{auth}@" if auth else ""
        return f"postgres://{host}{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    pytest.skip(f"no way to hand a {connection.vendor} test database to a subprocess")


@pytest.fixture
def celery_processes(tmp_path):
    url = _redis_url()
    if not _redis_answers(url):
        pytest.skip(f"Redis is not answering at {url}: start it (or run .ci/run, which does) to run this test")
    db_name = str(connection.settings_dict["NAME"])
    if (connection.vendor == "sqlite" and ":memory:" in db_name) or "mode=memory" in db_name:
        pytest.skip("the SQLite test database is in memory; the worker could not see it")
    run = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "DATABASE_URL": _database_url_of_the_test_database(),
        "CELERY_BROKER_URL": url,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "MANDATE_TESTING": "1",
        # Queues of our own, so another worker on the same Redis never takes these messages.
        "CELERY_TASK_DEFAULT_QUEUE": f"test-{run}",
        "MANDATE_SCHEDULED_QUEUE": f"test-scheduled-{run}",
        "MANDATE_SWEEP_CREDENTIALS_SECONDS": "2",
        "PYTHONUNBUFFERED": "1",
    }
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("worker", "beat")}  # noqa: SIM115
    commands = {
        "worker": [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "console",
            "worker",
            "--loglevel=INFO",
            "--pool=solo",
            "-Q",
            f"test-{run},test-scheduled-{run}",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"test-{run}@%h",
        ],
        "beat": [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "console",
            "beat",
            "--loglevel=INFO",
            "--schedule",
            str(tmp_path / "beat-schedule"),
            "--max-interval",
            "1",
        ],
    }
    procs = {
        name: subprocess.Popen(
            cmd, cwd=settings.BASE_DIR, env=env, stdout=logs[name], stderr=subprocess.STDOUT, start_new_session=True
        )
        for name, cmd in commands.items()
    }
    yield procs, tmp_path
    for proc in procs.values():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs.values():
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    for log in logs.values():
        log.close()


def test_beat_and_a_worker_expire_a_short_lived_credential_without_any_request(celery_processes, owner, admin):
    procs, logs = celery_processes
    envelope = make_envelope(make_instance(make_agent(owner)))
    services.approve_envelope(envelope=envelope, actor=admin)
    now = timezone.now()
    credential = Credential.objects.create(
        jti=secrets.token_hex(16),
        instance=envelope.instance,
        envelope=envelope,
        scopes=list(envelope.scopes),
        audience="mandate",
        issued_at=now,
        expires_at=now + timedelta(seconds=1),
        kid="test-kid",
    )

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if proc.poll() is not None:
                pytest.fail(
                    f"celery {name} exited with {proc.returncode}:\n{(logs / f'{name}.log').read_text()[-3000:]}"
                )
        credential.refresh_from_db()
        if credential.status == Credential.Status.EXPIRED:
            break
        time.sleep(0.5)
    else:
        pytest.fail(
            "the credential was not expired within 60 s.\nworker:\n"
            f"{(logs / 'worker.log').read_text()[-3000:]}\nbeat:\n{(logs / 'beat.log').read_text()[-2000:]}"
        )

    event = AuditEvent.objects.get(verb="credentials.expired", agent_id=envelope.agent_id)
    assert event.actor_type == "scheduler" and credential.jti in event.after["jtis"]
    assert "expire_overdue_credentials" in (logs / "worker.log").read_text()
