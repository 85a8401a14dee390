"""Discovery documents: the JWK Set, the SPIFFE JWT bundle, RFC 8414 metadata and the OpenID
Connect discovery document of the credential issuer. No auth.

Every document is built from the public members of published keys (an allow-list, never the stored
JWK), and may be cached by verifiers for the refresh hint: a new key is published at least that long
before it signs anything.
"""

from __future__ import annotations

from django.conf import settings
from django.http import JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_GET

from identities.assertions import LEEWAY_SECONDS, MAX_AGE_SECONDS, MAX_LIFETIME_SECONDS
from identities.credential_jwt import issuer
from identities.keys import ALGORITHM, REFRESH_HINT_SECONDS, key_set
from tasks.oauth import CLIENT_CREDENTIALS, TOKEN_EXCHANGE


def _cacheable(body: dict) -> JsonResponse:
    response = JsonResponse(body)
    response["Cache-Control"] = f"public, max-age={REFRESH_HINT_SECONDS}"
    response["Access-Control-Allow-Origin"] = "*"
    return response


def _absolute(request, name: str) -> str:
    path = reverse(name)
    if settings.MANDATE_PUBLIC_URL:
        return settings.MANDATE_PUBLIC_URL + path
    return request.build_absolute_uri(path)


@require_GET
def jwks(request):
    """GET /.well-known/jwks.json — RFC 7517 JWK Set for ordinary JWT libraries."""
    return _cacheable({"keys": key_set().jwks})


@require_GET
def spiffe_bundle(request):
    """GET /.well-known/spiffe-bundle — the SPIFFE trust domain bundle (JWT authorities only)."""
    keys = key_set()
    return _cacheable(
        {
            "keys": keys.spiffe_keys,
            "spiffe_sequence": keys.sequence,
            "spiffe_refresh_hint": REFRESH_HINT_SECONDS,
        }
    )


@require_GET
def authorization_server_metadata(request):
    """GET /.well-known/oauth-authorization-server — RFC 8414."""
    return _cacheable(
        {
            "issuer": issuer(),
            "token_endpoint": _absolute(request, "oauth-token"),
            "jwks_uri": _absolute(request, "jwks"),
            "introspection_endpoint": _absolute(request, "oauth-introspect"),
            "revocation_endpoint": _absolute(request, "oauth-revoke"),
            "grant_types_supported": [CLIENT_CREDENTIALS, TOKEN_EXCHANGE],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["EdDSA", "ES256"],
            "introspection_endpoint_auth_methods_supported": ["bearer"],
            "revocation_endpoint_auth_methods_supported": ["none", "bearer"],
            "response_types_supported": [],
            # Not registered by RFC 8414: how long after its iat a client assertion's exp may be,
            # how old its iat may be when it arrives, and the clock skew allowed on both.
            "token_endpoint_auth_max_assertion_lifetime": MAX_LIFETIME_SECONDS,
            "token_endpoint_auth_max_assertion_age": MAX_AGE_SECONDS,
            "token_endpoint_auth_assertion_leeway": LEEWAY_SECONDS,
            "access_token_signing_alg_values_supported": [ALGORITHM],
            "spiffe_bundle_endpoint": _absolute(request, "spiffe-bundle"),
            "spiffe_trust_domain": settings.MANDATE_TRUST_DOMAIN,
        }
    )


@require_GET
def openid_configuration(request):
    """GET /.well-known/openid-configuration — OpenID Connect Discovery 1.0 for the issuer of our
    credentials, so that a cloud's workload-identity federation (AWS IAM OIDC providers, GCP
    workload identity pools, Azure federated credentials) can verify them as web-identity tokens.

    Every URL is under the issuer (never the request's Host header): a verifier fetched this from
    ``issuer`` + the path above and checks the two agree. There is no authorization endpoint —
    credentials come from the token endpoint's client-credentials and token-exchange grants — so
    the required response and subject types describe the tokens themselves: JWTs naming a public
    ``sub`` (the instance's SPIFFE ID), signed with ES256.
    """
    base = issuer()
    return _cacheable(
        {
            "issuer": base,
            "jwks_uri": base + reverse("jwks"),
            "token_endpoint": base + reverse("oauth-token"),
            "grant_types_supported": [CLIENT_CREDENTIALS, TOKEN_EXCHANGE],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["EdDSA", "ES256"],
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "jti", "scope", "envelope", "act"],
        }
    )
