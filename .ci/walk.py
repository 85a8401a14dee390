"""A small HTTP client for the CI checks: people's API calls, an instance's key, assertions, mints.

Only the standard library, cryptography and PyJWT (both dependencies of Mandate) and requests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ed25519
from jwt.algorithms import OKPAlgorithm

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python")
HTTPS = {"X-Forwarded-Proto": "https"}  # what the TLS-terminating proxy in front would add


class Failed(AssertionError):
    pass


def check(condition: bool, what: str) -> None:
    if not condition:
        raise Failed(what)
    print(f"  ok  {what}")


def manage(*args: str, password: str | None = None) -> str:
    env = dict(os.environ)
    env.pop("MANDATE_PASSWORD", None)
    if password:
        env["MANDATE_PASSWORD"] = password
    done = subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise Failed(f"manage.py {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def api_token(username: str, role: str, *, password: str | None = None) -> str:
    manage("add_user", username, "--role", role, password=password)
    return manage("create_api_token", username).strip().splitlines()[-1]


class Api:
    def __init__(self, base: str, token: str):
        self.base, self.token = base.rstrip("/"), token

    def call(self, method: str, path: str, body=None, *, expect: int = 200):
        response = requests.request(
            method,
            self.base + path,
            json=body,
            headers={"Authorization": f"Bearer {self.token}", **HTTPS},
            timeout=30,
        )
        if response.status_code != expect:
            raise Failed(f"{method} {path}: expected {expect}, got {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None


class InstanceKey:
    def __init__(self):
        self.private = ed25519.Ed25519PrivateKey.generate()
        self.jwk = OKPAlgorithm.to_jwk(self.private.public_key(), as_dict=True)

    def assertion(self, spiffe_id: str, audience: str) -> str:
        now = int(time.time())
        claims = {"iss": spiffe_id, "sub": spiffe_id, "aud": audience, "iat": now, "exp": now + 60}
        return jwt.encode({**claims, "jti": str(uuid.uuid4())}, self.private, algorithm="EdDSA")


def mint(base: str, assertion: str, envelope: str, scope: str) -> requests.Response:
    return requests.post(
        base.rstrip("/") + "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
            "envelope": envelope,
            "scope": scope,
        },
        headers=HTTPS,
        timeout=30,
    )


def wait_up(base: str, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(base + "/healthz", headers=HTTPS, timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.3)
    return False


def run(main) -> None:
    try:
        main()
    except Failed as failure:
        print(f"FAILED: {failure}")
        sys.exit(1)
