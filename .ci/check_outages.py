"""Outages, against real servers: the database or the broker pointed at a port where nothing listens.

    .ci/check_outages.py WORKDIR

Run with a production-like environment (DATABASE_URL, CELERY_BROKER_URL live, secrets set). Starts
gunicorn twice: once with the database on a dead port (every endpoint family answers its 503 within
a second, /healthz 200, /readyz 503), once with the broker on a dead port (/readyz 200 naming the
broker; requesting, approving and revoking envelopes each answer within a second; their notices wait
in the outbox and are delivered, once, by the relay when the broker is back).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import requests
from walk import HTTPS, PY, ROOT, Api, Failed, InstanceKey, api_token, check, manage, run, wait_up

GUNICORN = str(ROOT / ".venv" / "bin" / "gunicorn")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(env: dict, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [GUNICORN, "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    if not wait_up(base):
        stop(process)
        raise Failed(f"gunicorn did not come up; see {log}")
    return process, base


def stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    process.wait(timeout=30)


def timed(method: str, url: str, **kwargs) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = requests.request(method, url, timeout=10, **kwargs)
    return response, time.monotonic() - started


def database_down(work: Path) -> None:
    print("database unreachable")
    dead = free_port()
    env = {**os.environ, "DATABASE_URL": f"postgres://postgres@127.0.0.1:{dead}/mandate"}
    process, base = serve(env, work / "gunicorn-db-down.log")
    try:
        bearer = {"Authorization": "Bearer mdt_0000000000000000000000000000000000000000", **HTTPS}
        form = {"Content-Type": "application/x-www-form-urlencoded", **HTTPS}
        api = [
            ("GET", "/api/v1/agents/", bearer, None),
            ("GET", "/api/v1/envelopes/", bearer, None),
            ("POST", "/api/v1/decisions", bearer, b'{"token": "a.b.c", "scope": "a:b", "resource": "r"}'),
            ("GET", "/api/v1/events/", bearer, None),
            ("GET", "/.well-known/jwks.json", HTTPS, None),
            ("GET", "/.well-known/spiffe-bundle", HTTPS, None),
        ]
        for method, path, headers, body in api:
            headers = {**headers, "Content-Type": "application/json"} if body else headers
            response, seconds = timed(method, base + path, headers=headers, data=body)
            check(
                response.status_code == 503
                and response.json().get("code") == "temporarily_unavailable"
                and response.headers.get("Retry-After")
                and seconds < 1,
                f"{method} {path}: JSON 503 with Retry-After in {seconds:.2f} s",
            )
        # A well-formed assertion: the endpoint has to look its instance up to refuse or accept it.
        spiffe_id = f"spiffe://mandate.local/agent/outage/instance/{uuid.uuid4()}"
        token_form = urlencode(
            {
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": InstanceKey().assertion(spiffe_id, "https://mandate.ci.test/oauth/token"),
                "envelope": str(uuid.uuid4()),
            }
        )
        for path, body in [
            ("/oauth/introspect", "token=a.b.c"),
            ("/oauth/revoke", "token=a.b.c"),
            ("/oauth/token", token_form),
        ]:
            headers = {**form, **({"Authorization": bearer["Authorization"]} if "token=" in body[:6] else {})}
            response, seconds = timed("POST", base + path, headers=headers, data=body)
            ok = response.status_code == 503 and response.json().get("error") == "temporarily_unavailable"
            check(ok and seconds < 1, f"POST {path}: temporarily_unavailable in {seconds:.2f} s ({response.text[:80]})")
        # A signed-in person (a session cookie) on a console page: the session lives in the database.
        page, seconds = timed("GET", base + "/", headers=HTTPS, cookies={"sessionid": "s" * 32}, allow_redirects=False)
        check(
            page.status_code == 503 and page.headers["Content-Type"].startswith("text/html") and seconds < 1,
            f"a console page: a plain 503 page in {seconds:.2f} s",
        )
        check(requests.get(base + "/readyz", headers=HTTPS, timeout=10).status_code == 503, "/readyz 503")
        check(requests.get(base + "/healthz", headers=HTTPS, timeout=10).status_code == 200, "/healthz 200")
    finally:
        stop(process)
    log = (work / "gunicorn-db-down.log").read_text()
    check("Traceback" not in log, "no traceback in the server's log")


def broker_down(work: Path) -> None:
    print("broker unreachable")
    dead = free_port()
    env = {**os.environ, "CELERY_BROKER_URL": f"redis://127.0.0.1:{dead}/0", "CELERY_TASK_ALWAYS_EAGER": "false"}
    process, base = serve(env, work / "gunicorn-broker-down.log")
    try:
        ready = requests.get(base + "/readyz", headers=HTTPS, timeout=10)
        body = ready.json()
        check(
            ready.status_code == 200 and "broker" in body.get("details", {}), f"/readyz 200 naming the broker: {body}"
        )
        owner = Api(base, api_token("outage-owner", "agent-owner"))
        admin = Api(base, api_token("outage-admin", "identity-admin"))
        slug = f"outage-{int(time.time())}"
        owner.call(
            "POST",
            "/api/v1/agents/",
            {"slug": slug, "name": slug, "ceiling": ["github:write"], "max_envelope_seconds": 3600},
            expect=201,
        )
        admin.call("POST", f"/api/v1/agents/{slug}/pending-change/approve", {"comment": "ok"}, expect=200)
        instance = owner.call(
            "POST", f"/api/v1/agents/{slug}/instances/", {"public_jwk": InstanceKey().jwk}, expect=201
        )
        request = {
            "instance": instance["id"],
            "intent": "outage check",
            "scopes": ["github:write"],
            "resources": ["repo:acme/*"],
            "duration_seconds": 900,
            "max_actions": 5,
        }
        envelope: dict = {}
        for api, path, payload, expect in [
            (owner, "/api/v1/envelopes/", request, 201),
            (admin, "/api/v1/envelopes/{id}/approve", {"comment": "ok"}, 200),
            (admin, "/api/v1/envelopes/{id}/revoke", {"reason": "outage check"}, 200),
        ]:
            started = time.monotonic()
            answer = api.call("POST", path.format(id=envelope.get("id")), payload, expect=expect)
            seconds = time.monotonic() - started
            envelope = envelope or answer
            check(seconds < 1, f"POST {path} answered in {seconds:.2f} s with the broker down")
    finally:
        stop(process)
    count = (
        "from tasks.models import OutboxMessage as O; "
        "print(O.objects.filter(envelope_id='{id}', delivered_at__isnull=True).count())"
    ).format(id=envelope["id"])
    waiting = manage("shell", "-v", "0", "-c", count).strip()
    check(waiting == "2", f"both notices (pending, decided) wait in the outbox ({waiting})")
    relay = (
        "from datetime import timedelta; from django.utils import timezone; from tasks.outbox import relay_outbox; "
        "print(relay_outbox(now=timezone.now() + timedelta(minutes=1)))"
    )
    # The broker is back (the environment's live one); the relay hands the rows over and the worker
    # (in process here) delivers them, once: a second relay finds nothing left.
    back = {**os.environ, "CELERY_TASK_ALWAYS_EAGER": "true"}
    first = subprocess.run(
        [PY, "manage.py", "shell", "-v", "0", "-c", relay], cwd=ROOT, env=back, capture_output=True, text=True
    )
    check(
        first.returncode == 0 and int(first.stdout.strip().splitlines()[-1]) >= 2,
        f"relay delivers them: {first.stdout}{first.stderr[-500:]}",
    )
    check(manage("shell", "-v", "0", "-c", count).strip() == "0", "none waits any more")
    second = subprocess.run(
        [PY, "manage.py", "shell", "-v", "0", "-c", relay], cwd=ROOT, env=back, capture_output=True, text=True
    )
    check(second.stdout.strip().splitlines()[-1] == "0", "a second relay hands over nothing")


def main() -> None:
    work = Path(sys.argv[1])
    work.mkdir(parents=True, exist_ok=True)
    database_down(work)
    broker_down(work)


if __name__ == "__main__":
    run(main)
