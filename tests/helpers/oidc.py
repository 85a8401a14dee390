"""A small OpenID Connect workload-token issuer for tests: discovery and JWKS served over HTTP on
127.0.0.1 by a thread, keys it can rotate, and tokens it mints. It counts every JWKS fetch."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

_ALGS = {"RS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}


def new_signing_key(alg: str):
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


class LocalIssuer:
    def __init__(self, alg: str = "ES256"):
        self.alg = alg
        self.keys: dict[str, object] = {}
        self.current_kid = self.add_key()
        self.jwks_fetches = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # Mandate fetches from loopback only when told to (MANDATE_OUTBOUND_ALLOW); the suite's
        # _loopback_only fixture drops the entry when the test ends.
        from django.conf import settings

        settings.MANDATE_OUTBOUND_ALLOW = [
            *settings.MANDATE_OUTBOUND_ALLOW,
            f"127.0.0.1:{self._server.server_address[1]}",
        ]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    # keys ------------------------------------------------------------------------------------
    def add_key(self, alg: str | None = None) -> str:
        kid = uuid.uuid4().hex[:16]
        self.keys[kid] = (alg or self.alg, new_signing_key(alg or self.alg))
        return kid

    def rotate(self) -> str:
        """Publish a new key, sign with it, and drop the old one from the JWKS."""
        old = self.current_kid
        self.current_kid = self.add_key()
        del self.keys[old]
        return self.current_kid

    def jwks(self) -> dict:
        keys = []
        for kid, (alg, private) in self.keys.items():
            jwk = _ALGS[alg].to_jwk(private.public_key(), as_dict=True)
            jwk.update({"kid": kid, "use": "sig", "alg": alg})
            keys.append(jwk)
        return {"keys": keys}

    # tokens ----------------------------------------------------------------------------------
    def token(
        self,
        *,
        sub="system:serviceaccount:billing:invoice-triage",
        aud="mandate",
        lifetime=300,
        iat_offset=0,
        kid=None,
        private=None,
        alg=None,
        iss=None,
        jti=True,
        **claims,
    ) -> str:
        now = int(time.time()) + iat_offset
        kid = kid or self.current_kid
        key_alg, key = self.keys.get(kid, (self.alg, None))
        body = {"iss": iss or self.url, "sub": sub, "aud": aud, "iat": now, "nbf": now, "exp": now + lifetime, **claims}
        if jti:
            body["jti"] = uuid.uuid4().hex
        return jwt.encode(body, private or key, algorithm=alg or key_alg, headers={"kid": kid})

    # server ----------------------------------------------------------------------------------
    def _handler(self):
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks"}
                elif self.path == "/jwks":
                    issuer.jwks_fetches += 1
                    body = issuer.jwks()
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        return Handler

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def enable_sso(
    settings, *, issuer: str, client_id: str, client_secret: str, role_map: dict[str, set[str]], allowed_groups=()
) -> None:
    """Switch single sign-on on for one test, as MANDATE_OIDC_* variables would at start-up."""
    # The project's URLs read MANDATE_OIDC_ENABLED once, when first imported: import them while it is
    # still off, so they stay the SSO-less ones for every later test (SSO's come from sso_urlconf).
    import console.urls  # noqa: F401
    from console import sso

    settings.MANDATE_OIDC_ENABLED = True
    settings.MANDATE_OIDC_ISSUER = issuer
    settings.MANDATE_OIDC_DISCOVERY_URL = f"{issuer}/.well-known/openid-configuration"
    settings.OIDC_RP_CLIENT_ID = client_id
    settings.OIDC_RP_CLIENT_SECRET = client_secret
    settings.OIDC_RP_SCOPES = "openid email profile groups"
    settings.OIDC_RP_SIGN_ALGO = "RS256"
    settings.MANDATE_OIDC_ROLE_CLAIM = "groups"
    settings.MANDATE_OIDC_ROLE_MAP = role_map
    settings.MANDATE_OIDC_ALLOWED_GROUPS = list(allowed_groups)
    settings.MANDATE_OIDC_BUTTON_LABEL = "Sign in with SSO"
    settings.OIDC_USE_PKCE = True
    settings.OIDC_USE_NONCE = True
    settings.OIDC_TIMEOUT = 10
    settings.OIDC_AUTHENTICATION_CALLBACK_URL = "oidc_authentication_callback"
    settings.AUTHENTICATION_BACKENDS = [
        "axes.backends.AxesStandaloneBackend",
        "accounts.auth_backends.PasswordBackend",
        "console.sso.MandateOIDCBackend",
    ]
    settings.MANDATE_OIDC_REVALIDATE_SECONDS = 900
    settings.MANDATE_OIDC_ONLY = False
    settings.MANDATE_BREAK_GLASS_USERS = []
    templates = [dict(t, OPTIONS=dict(t["OPTIONS"])) for t in settings.TEMPLATES]
    templates[0]["OPTIONS"]["context_processors"] = [
        *templates[0]["OPTIONS"]["context_processors"],
        "console.sso.context",
    ]
    settings.TEMPLATES = templates
    settings.ROOT_URLCONF = "tests.e2e.sso_urlconf"
    sso._forget_provider_config()
