"""The production recipe, checked against two running gunicorn servers sharing one PostgreSQL database.

    .ci/check_production.py http://127.0.0.1:PORT_A http://127.0.0.1:PORT_B

Run with the servers' environment (manage.py creates the people). Checks, each through the simulated
TLS proxy header: the console's CSS is served under a hashed name, compressed and cached for long;
signing in works; /readyz is 200; a credential revoked on one server is refused on the other; an
assertion used on one server is refused as a replay on the other; /metrics is refused anonymously
and, with an auditor's token, adds up the figures of every worker.
"""

from __future__ import annotations

import os
import re
import secrets
import sys

import jwt
import requests
from walk import HTTPS, Api, InstanceKey, api_token, check, mint, run


def static_and_sign_in(base: str, password: str) -> None:
    login = requests.get(base + "/login/", headers=HTTPS, timeout=10)
    check(login.status_code == 200, "the sign-in page answers 200 over the proxy")
    match = re.search(r'href="(/static/console/console\.[0-9a-f]{12}\.css)"', login.text)
    check(match is not None, "the page links its CSS under a content-hashed name")
    css = requests.get(base + match.group(1), headers={**HTTPS, "Accept-Encoding": "gzip"}, timeout=10)
    check(css.status_code == 200 and "text/css" in css.headers.get("Content-Type", ""), "the CSS is served (200)")
    check(css.headers.get("Content-Encoding") in ("gzip", "br"), "compressed")
    check("max-age=315360000" in css.headers.get("Cache-Control", ""), "cached for years (immutable name)")
    favicon = re.search(r'href="(/static/console/favicon\.[0-9a-f]{12}\.svg)"', login.text)
    check(
        favicon is not None and requests.get(base + favicon.group(1), headers=HTTPS, timeout=10).status_code == 200,
        "favicon",
    )

    cookies = dict(login.cookies)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
    signed_in = requests.post(
        base + "/login/",
        data={"username": "prod-admin", "password": password, "csrfmiddlewaretoken": token},
        cookies=cookies,
        headers={**HTTPS, "Referer": "https://127.0.0.1/login/", "Origin": "https://127.0.0.1"},
        allow_redirects=False,
        timeout=10,
    )
    check(signed_in.status_code == 302 and "sessionid" in signed_in.cookies, "signing in sets a session (302)")
    check(signed_in.cookies.get("sessionid") is not None, "the session cookie is issued")
    session = {**cookies, **dict(signed_in.cookies)}
    home = requests.get(base + "/", cookies=session, headers=HTTPS, allow_redirects=False, timeout=10)
    check(home.status_code == 200 and "prod-admin" in home.text, "the dashboard answers the signed-in admin")


def main() -> None:
    base_a, base_b = (url.rstrip("/") for url in sys.argv[1:3])
    password = "prod-" + secrets.token_urlsafe(12)
    admin = Api(base_a, api_token("prod-admin", "identity-admin", password=password))
    owner_a = Api(base_a, api_token("prod-owner", "agent-owner"))
    gateway_b = Api(base_b, api_token("prod-gateway", "gateway"))
    auditor_b = Api(base_b, api_token("prod-auditor", "auditor"))

    print("static files and signing in")
    static_and_sign_in(base_a, password)
    ready = requests.get(base_b + "/readyz", headers=HTTPS, timeout=10)
    check(ready.status_code == 200 and ready.json()["checks"] == {"database": True, "broker": True}, "/readyz 200")

    print("two servers, one database")
    slug = "prod-" + secrets.token_hex(3)
    owner_a.call(
        "POST",
        "/api/v1/agents/",
        {"slug": slug, "name": slug, "ceiling": ["github:write"], "max_envelope_seconds": 3600},
        expect=201,
    )
    admin.call("POST", f"/api/v1/agents/{slug}/pending-change/approve", {"comment": "ci"}, expect=200)
    key = InstanceKey()
    instance = owner_a.call(
        "POST", f"/api/v1/agents/{slug}/instances/", {"public_jwk": key.jwk, "label": "w"}, expect=201
    )
    envelope = owner_a.call(
        "POST",
        "/api/v1/envelopes/",
        {
            "instance": instance["id"],
            "intent": "production check",
            "scopes": ["github:write"],
            "resources": ["repo:acme/*"],
            "duration_seconds": 900,
            "max_actions": 20,
        },
        expect=201,
    )
    if envelope["state"] == "pending":
        admin.call("POST", f"/api/v1/envelopes/{envelope['id']}/approve", {"comment": "ci"})
    # Both servers sit behind one public URL, so an assertion names the same audience on either.
    audience = os.environ["MANDATE_PUBLIC_URL"] + "/oauth/token"
    assertion = key.assertion(instance["spiffe_id"], audience)
    minted = mint(base_a, assertion, envelope["id"], "github:write")
    check(minted.status_code == 200, "a credential is minted on server A")
    replayed = mint(base_b, assertion, envelope["id"], "github:write")
    check(
        replayed.status_code == 401 and "replayed" in replayed.json()["error_description"],
        f"the same assertion replayed on server B is refused ({replayed.json().get('error_description')})",
    )

    access = minted.json()["access_token"]
    decision = {"token": access, "scope": "github:write", "resource": "repo:acme/api"}
    check(gateway_b.call("POST", "/api/v1/decisions/", decision)["reason"] == "ok", "server B allows the call")
    jti = jwt.decode(access, options={"verify_signature": False})["jti"]
    admin.call("POST", f"/api/v1/credentials/{jti}/revoke", {"reason": "ci: revoked on server A"})
    answer = gateway_b.call("POST", "/api/v1/decisions", decision)
    check(answer["reason"] == "token_revoked", "a credential revoked on server A is refused by server B")

    print("metrics")
    check(requests.get(base_b + "/metrics", headers=HTTPS, timeout=10).status_code == 401, "anonymous: 401")
    figures = requests.get(
        base_b + "/metrics", headers={**HTTPS, "Authorization": f"Bearer {auditor_b.token}"}, timeout=10
    )
    check(figures.status_code == 200, "an auditor's token reads /metrics")
    check('mandate_decisions_total{reason="ok"}' in figures.text, "decisions are counted by reason")
    check('mandate_decisions_total{reason="token_revoked"}' in figures.text, "refusals too")
    check("mandate_live_credentials" in figures.text and "mandate_pending_approvals" in figures.text, "gauges")


if __name__ == "__main__":
    run(main)
