"""/healthz and /readyz: readiness reports the database and the broker, for each kind of broker."""

from __future__ import annotations

import socket

import pytest

from console import health
from console.celery import app

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker(monkeypatch):
    # Celery reads CELERY_BROKER_URL from the environment before its own settings (CI sets it).
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)

    def use(url: str, options: dict | None = None):
        monkeypatch.setitem(app.conf, "broker_url", url)
        monkeypatch.setitem(app.conf, "broker_transport_options", options or {})

    return use


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_healthz_answers_without_touching_anything(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_is_ok_with_the_embedded_filesystem_broker(client, broker, tmp_path):
    broker("filesystem://", {"data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path)})
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["checks"] == {"database": True, "broker": True}


def _degraded(response) -> bool:
    """A web node without its broker keeps serving: ready, naming the broker in the details."""
    body = response.json()
    return (
        response.status_code == 200
        and body["status"] == "degraded"
        and body["checks"] == {"database": True, "broker": False}
        and "outbox" in body["details"]["broker"]
    )


def test_readyz_names_a_missing_filesystem_broker_folder_but_stays_ready(client, broker, tmp_path):
    missing = str(tmp_path / "gone")
    broker("filesystem://", {"data_folder_in": missing, "data_folder_out": missing})
    assert _degraded(client.get("/readyz"))


def test_readyz_names_a_redis_that_does_not_answer_but_stays_ready(client, broker):
    broker(f"redis://127.0.0.1:{_closed_port()}/0")
    assert _degraded(client.get("/readyz"))


def test_readyz_names_a_rabbitmq_that_does_not_answer_but_stays_ready(client, broker):
    broker(f"amqp://guest:guest@127.0.0.1:{_closed_port()}//")
    assert _degraded(client.get("/readyz"))


def test_readyz_is_ok_with_a_live_redis(client, broker):
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            pass
    except OSError:
        pytest.skip("no Redis on 127.0.0.1:6379 (start one, or run .ci/run which does)")
    broker("redis://127.0.0.1:6379/3")
    assert client.get("/readyz").status_code == 200


def test_readyz_reports_a_database_that_fails(client, monkeypatch):
    monkeypatch.setattr(health, "_database_ok", lambda: False)
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["checks"]["database"] is False
