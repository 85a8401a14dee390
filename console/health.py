"""Liveness and readiness probes."""

from __future__ import annotations

from django.db import connection
from django.http import JsonResponse

from audit.checkpoints import sink_status


def healthz(request):
    return JsonResponse({"status": "ok"})


BROKER_DOWN = (
    "unreachable: requests are still served; notifications wait in the outbox and are delivered "
    "once the broker is back, scheduled sweeps resume with it"
)


def readyz(request):
    """Ready means able to serve requests: that needs the database. A broker that is down does not
    stop a web node (notices wait in the outbox, tasks/outbox.py), so it is reported, not failed on."""
    checks = {"database": _database_ok(), "broker": _broker_ok()}
    body: dict = {"status": "ok", "checks": checks, "details": {}}
    if not checks["broker"]:
        body["status"] = "degraded"
        body["details"]["broker"] = BROKER_DOWN
    if checks["database"]:
        # Reported, never a 503: a failing sink on one host must not take every node out of rotation.
        body["details"]["audit_sink"] = _audit_sink()
    else:
        body["status"] = "unavailable"
        body["details"]["database"] = "unreachable: nothing can be served"
    return JsonResponse(body, status=200 if checks["database"] else 503)


def _audit_sink() -> dict:
    try:
        return sink_status()
    except Exception as exc:  # a probe reports, it does not raise
        return {"ok": False, "error": f"cannot read the checkpoint state: {type(exc).__name__}"}


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:
        return False


def _broker_ok() -> bool:
    """True when the broker would take a message now. Each transport is asked the way that
    really touches it: kombu connects lazily for some, so ``ensure_connection`` alone can say
    yes to a Redis that is down."""
    from console.celery import app

    url = app.conf.broker_url or ""
    scheme = url.split("://", 1)[0].lower()
    try:
        if scheme == "filesystem":
            return _filesystem_broker_ok(app.conf.broker_transport_options or {})
        if scheme in ("redis", "rediss"):
            import redis

            client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
            try:
                return bool(client.ping())
            finally:
                client.close()
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
            return bool(conn.connected)
    except Exception:
        return False


def _filesystem_broker_ok(options: dict) -> bool:
    """The embedded broker is a folder: it must exist and be writable by this process."""
    import os

    folders = {options.get("data_folder_in"), options.get("data_folder_out")} - {None}
    if options.get("store_processed"):
        folders.add(options.get("processed_folder"))
    return bool(folders) and all(os.path.isdir(f) and os.access(f, os.W_OK | os.X_OK) for f in folders)
