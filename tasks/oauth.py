"""The OAuth endpoints: token (RFC 6749 / 7523 / 8693), introspection (RFC 7662), revocation (RFC 7009).

Plain Django views, not DRF: these follow their RFCs (form-encoded requests, RFC 6749 error bodies,
``Cache-Control: no-store``) rather than the JSON API's conventions, and the token endpoint is the
hot path. Each view parses, calls a service and renders; every refusal is a 4xx, never a 500.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.db import OperationalError
from django.http import HttpResponse, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from prometheus_client import Counter
from rest_framework import exceptions as drf_exceptions

from accounts.authentication import (
    ApiCaller,
    ApiTokenAuthentication,
    api_caller,
    forget_api_caller,
    remembered_api_caller,
)
from accounts.roles import AUDITOR, GATEWAY, IDENTITY_ADMIN
from audit import services as audit
from core import ratelimit
from core.client_address import client_address
from core.errors import InvalidTransition
from core.json_output import json_response
from core.oauth_errors import (
    INVALID_CLIENT,
    INVALID_REQUEST,
    INVALID_SCOPE,
    INVALID_TARGET,
    INVALID_TOKEN,
    SLOW_DOWN,
    UNSUPPORTED_GRANT_TYPE,
    AssertionRejected,
    GrantRefused,
    OAuthError,
    TokenRejected,
    WorkloadTokenRejected,
)
from core.sql import PreparedValues
from identities.assertions import JWT_BEARER, maybe_purge_used_assertions, verify_client_assertion
from identities.credential_jwt import VerifiedToken, verify_access_token
from identities.models import Agent, Credential, Instance, spiffe_id_for
from identities.oidc import is_workload_assertion, workload_client_assertion
from identities.validators import is_scope
from tasks.decisions import may_still_act, standing_params, standing_sql, verify_token_cached
from tasks.issuance import delegate_credential, issue_credential
from tasks.lifecycle import revoke_credential
from tasks.models import TaskEnvelope

CLIENT_CREDENTIALS = "client_credentials"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"
TOKEN_TYPE_ACCESS = "urn:ietf:params:oauth:token-type:access_token"
_AUDIENCE_RE = re.compile(r"^[\x21-\x7e]{1,500}$")
_MAX_PARAM_CHARS = 8192
_MAX_TTL_DIGITS = 7


# In memory, per request (no query); exposed at /metrics (console/metrics.py).
MINTS = Counter("mandate_credentials_minted_total", "Credentials issued at /oauth/token, by grant.", ["grant"])
REFUSALS = Counter("mandate_token_refusals_total", "Refusals at /oauth/token, by OAuth error.", ["error"])


def _throttle(name: str, key: str, per_minute: int) -> None:
    """Count one request against a per-minute limit in the shared store; 429 once it is used."""
    _throttle_all([(name, key, per_minute)])


def _throttle_all(limits: list[tuple[str, str, int]]) -> None:
    """Count one request against each (name, key, per-minute limit) in one round trip; 429 once the
    first of them, in this order, is used.

    The error is ``slow_down``: the code OAuth registers for a token-endpoint client that asks too
    often (RFC 8628 §3.5, in the OAuth Extensions Error Registry for token endpoint responses).
    ``temporarily_unavailable`` is registered for the authorization endpoint only and says the
    server is overloaded, not that this client must wait; ``Retry-After`` (RFC 6585) says how long.
    """
    exceeded = ratelimit.hit_all(limits, window=60)
    if exceeded is not None:
        raise _slow_down(exceeded)


def _slow_down(exceeded: ratelimit.Exceeded) -> OAuthError:
    return OAuthError(
        SLOW_DOWN,
        f"too many requests: at most {exceeded.limit} a minute; retry after {exceeded.retry_after} s",
        status=429,
        headers={"Retry_After": str(exceeded.retry_after)},
    )


R = TypeVar("R", bound=HttpResponse)


def _no_store(response: R) -> R:
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response


def _error(error: str, description: str, status: int = 400, **headers) -> JsonResponse:
    response = JsonResponse({"error": error, "error_description": description}, status=status)
    if status == 503:
        headers.setdefault("Retry_After", "5")
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return _no_store(response)


def _form(request) -> dict[str, str]:
    """The form body as single values: RFC 6749 §3.2 forbids repeating a parameter."""
    if request.method != "POST":
        raise OAuthError(INVALID_REQUEST, "use POST", status=405)
    content_type = request.content_type or ""
    if content_type != "application/x-www-form-urlencoded":
        raise OAuthError(INVALID_REQUEST, "the body must be application/x-www-form-urlencoded")
    try:
        items = list(request.POST.lists())
    except (RequestDataTooBig, TooManyFieldsSent, SuspiciousOperation):
        raise OAuthError(INVALID_REQUEST, "the request body is too large") from None
    params: dict[str, str] = {}
    for name, values in items:
        if len(values) != 1:
            raise OAuthError(INVALID_REQUEST, f"parameter {name[:40]} is repeated")
        if len(values[0]) > _MAX_PARAM_CHARS:
            raise OAuthError(INVALID_REQUEST, f"parameter {name[:40]} is too long")
        params[name] = values[0]
    return params


def _required(params: dict, name: str) -> str:
    value = params.get(name)
    if not value:
        raise OAuthError(INVALID_REQUEST, f"{name} is required")
    return value


def token_endpoint_url(request) -> str:
    """The audience client assertions must name: absolute, from MANDATE_PUBLIC_URL or the request."""
    path = reverse("oauth-token")
    if settings.MANDATE_PUBLIC_URL:
        return settings.MANDATE_PUBLIC_URL + path
    return request.build_absolute_uri(path)


def _parse_scopes(params: dict) -> list[str] | None:
    if "scope" not in params:
        return None
    scopes = params["scope"].split(" ")
    if not params["scope"] or not all(is_scope(s) for s in scopes):
        raise OAuthError(INVALID_SCOPE, "scope is a space-separated list such as 'github:read'")
    return scopes


def _parse_resource(params: dict) -> str | None:
    """RFC 8707's ``resource``: an absolute URI without a fragment, naming where the token is to be
    used (how MCP clients ask for a token for one MCP server). Malformed → ``invalid_target``."""
    if "resource" not in params:
        return None
    resource = params["resource"]
    parts = urlsplit(resource) if _AUDIENCE_RE.fullmatch(resource) else None
    if parts is None or not parts.scheme or "#" in resource or not (parts.netloc or parts.path):
        raise OAuthError(
            INVALID_TARGET, "resource is an absolute URI without a fragment, at most 500 visible characters"
        )
    return resource


def _parse_audience(params: dict) -> str | None:
    """The credential's audience, from ``audience`` or ``resource`` (either; both only when equal).
    A repeated parameter never gets here: ``_form`` refuses it."""
    resource = _parse_resource(params)
    if "audience" not in params:
        return resource
    if not _AUDIENCE_RE.fullmatch(params["audience"]):
        raise OAuthError(INVALID_REQUEST, "audience is 1 to 500 visible characters, no spaces")
    if resource is not None and resource != params["audience"]:
        raise OAuthError(INVALID_REQUEST, "resource and audience name different audiences; send one of them")
    return params["audience"]


def _parse_ttl(params: dict) -> int | None:
    if "ttl" not in params:
        return None
    raw = params["ttl"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > _MAX_TTL_DIGITS or int(raw) < 1:
        raise OAuthError(INVALID_REQUEST, "ttl is a whole number of seconds, at least 1")
    return int(raw)


def _authenticate(assertion: str, request, *, client_id: str | None = None):
    if is_workload_assertion(assertion):
        # A token from a trusted OpenID Connect workload issuer instead of a Mandate-registered key.
        try:
            return workload_client_assertion(assertion, instance_hint=client_id)
        except WorkloadTokenRejected as rejected:
            raise OAuthError(INVALID_CLIENT, rejected.description, status=401) from None
    try:
        return verify_client_assertion(assertion, audience=token_endpoint_url(request))
    except AssertionRejected as rejected:
        raise OAuthError(INVALID_CLIENT, str(rejected), status=401) from None


def _client_credentials(request, params: dict):
    if params.get("client_assertion_type") != JWT_BEARER:
        raise OAuthError(INVALID_CLIENT, f"client_assertion_type must be {JWT_BEARER}", status=401)
    assertion = _authenticate(_required(params, "client_assertion"), request, client_id=params.get("client_id"))
    if "client_id" in params and params["client_id"] != assertion.spiffe_id:
        raise OAuthError(INVALID_CLIENT, "client_id does not match the assertion", status=401)
    # Counted only now that the assertion's signature verified: never per an unsigned claim.
    _throttle("token-client", assertion.spiffe_id, settings.MANDATE_RATE_TOKEN_PER_CLIENT)
    try:
        envelope_id = uuid.UUID(_required(params, "envelope"))
    except ValueError:
        raise OAuthError(INVALID_REQUEST, "envelope is an envelope id") from None
    minted = issue_credential(
        assertion=assertion,
        envelope_id=envelope_id,
        scopes=_parse_scopes(params),
        audience=_parse_audience(params),
        ttl=_parse_ttl(params),
        request=request,
    )
    return minted, {}


def _token_exchange(request, params: dict):
    if params.get("subject_token_type") not in (TOKEN_TYPE_JWT, TOKEN_TYPE_ACCESS):
        raise OAuthError(INVALID_REQUEST, f"subject_token_type must be {TOKEN_TYPE_JWT}")
    subject_token = _required(params, "subject_token")
    if params.get("actor_token_type") != TOKEN_TYPE_JWT:
        raise OAuthError(INVALID_REQUEST, f"actor_token_type must be {TOKEN_TYPE_JWT}")
    assertion = _authenticate(_required(params, "actor_token"), request)
    _throttle("token-client", assertion.spiffe_id, settings.MANDATE_RATE_TOKEN_PER_CLIENT)
    if "requested_token_type" in params and params["requested_token_type"] not in (TOKEN_TYPE_JWT, TOKEN_TYPE_ACCESS):
        raise OAuthError(INVALID_REQUEST, "only JWT access tokens are issued")
    minted = delegate_credential(
        subject_token=subject_token,
        assertion=assertion,
        scopes=_parse_scopes(params),
        audience=_parse_audience(params),
        ttl=_parse_ttl(params),
        request=request,
    )
    return minted, {"issued_token_type": TOKEN_TYPE_JWT}


_GRANTS = {CLIENT_CREDENTIALS: _client_credentials, TOKEN_EXCHANGE: _token_exchange}
_RETRYABLE = {"40P01", "40001"}  # deadlock detected, serialization failure


def _with_one_retry(grant, request, params):
    """A mint share-locks rows that a pause or revocation locks for update; in the rare case the
    two deadlock, PostgreSQL aborts one. The mint rolled back whole (its assertion too), so it is
    simply tried once more; a second failure is a 503, never a 500."""
    for attempt in (1, 2):
        try:
            return grant(request, params)
        except OperationalError as exc:
            if attempt == 1 and getattr(exc.__cause__, "sqlstate", None) in _RETRYABLE:
                continue
            raise OAuthError("temporarily_unavailable", "the database is busy; try again", status=503) from None
    raise AssertionError("unreachable")


@csrf_exempt
def token(request):
    """POST /oauth/token — issue (client_credentials) or delegate (token exchange)."""
    try:
        # Before anything is parsed or verified, the caller is only an address.
        _throttle("token-address", client_address(request), settings.MANDATE_RATE_TOKEN_PER_ADDRESS)
        params = _form(request)
        grant = _GRANTS.get(_required(params, "grant_type"))
        if grant is None:
            raise OAuthError(UNSUPPORTED_GRANT_TYPE, "use client_credentials or token exchange")
        minted, extra = _with_one_retry(grant, request, params)
    except OAuthError as err:
        REFUSALS.labels(err.error).inc()
        return _error(err.error, err.description, err.status, **err.headers)
    except GrantRefused as refusal:
        REFUSALS.labels(refusal.error).inc()
        return _error(refusal.error, refusal.description, 401 if refusal.error == INVALID_CLIENT else 400)
    finally:
        maybe_purge_used_assertions()
    MINTS.labels("token_exchange" if params.get("grant_type") == TOKEN_EXCHANGE else "client_credentials").inc()
    credential = minted.credential
    # When the authority behind the credential ends (seconds, like expires_in): a client that trades
    # the credential for a cloud session, which Mandate cannot revoke, asks for no more than this.
    envelope_left = max(int((credential.envelope.expires_at - timezone.now()).total_seconds()), 0)
    return _no_store(
        JsonResponse(
            {
                "access_token": minted.token,
                "token_type": "Bearer",
                "expires_in": minted.expires_in,
                "scope": " ".join(credential.scopes),
                "envelope": str(credential.envelope_id),
                "envelope_expires_in": envelope_left,
                **extra,
            }
        )
    )


# --- introspection and revocation ----------------------------------------------------------------


def _api_caller(request):
    """The user behind an ``mdt_`` API token, None when none was sent."""
    try:
        found = ApiTokenAuthentication().authenticate(request)
    except drf_exceptions.AuthenticationFailed as failed:
        raise OAuthError(INVALID_TOKEN, str(failed.detail), status=401) from None
    return None if found is None else found[0]


# Who may introspect; the order is the order of the standing check's parameters.
INTROSPECTORS = (GATEWAY, IDENTITY_ADMIN, AUDITOR)
_INTROSPECTOR_SET = frozenset(INTROSPECTORS)


def _introspecting_caller(request, *, fresh: bool = False) -> tuple[ApiCaller, bool]:
    """The API token's caller with their roles (one is required), and whether it was remembered by
    this process (``remembered_api_caller``: it must then be re-checked by the request's own read)
    rather than read now (``api_caller``: one query)."""
    try:
        if fresh:
            found, remembered = api_caller(request), False
        else:
            found, remembered = remembered_api_caller(request, _INTROSPECTOR_SET)
    except drf_exceptions.AuthenticationFailed as failed:
        raise OAuthError(INVALID_TOKEN, str(failed.detail), status=401) from None
    if found is None:
        raise OAuthError(INVALID_TOKEN, "send a gateway, admin or auditor API token as Bearer", status=401)
    return found, remembered


def _may_introspect(caller: ApiCaller) -> None:
    if not caller.roles & _INTROSPECTOR_SET:
        raise OAuthError("insufficient_scope", "introspection is for gateways, admins and auditors", status=403)


def _refusal_of_remembered(request) -> OAuthError:
    """A remembered caller the database no longer lets introspect: forgotten, and refused exactly as
    a fresh read refuses it (401 revoked, expired or deactivated; 403 no introspecting role)."""
    forget_api_caller(request)
    try:
        _may_introspect(_introspecting_caller(request, fresh=True)[0])
    except OAuthError as err:
        return err
    # Allowed again by the time it was read: this request was still refused by its own check.
    return OAuthError(INVALID_TOKEN, "invalid, expired or revoked token", status=401)


def _unauthorised(err: OAuthError) -> JsonResponse:
    if err.status == 401:
        return _error(err.error, err.description, 401, WWW_Authenticate=f'Bearer error="{err.error}"')
    return _error(err.error, err.description, err.status, **err.headers)


@dataclass(frozen=True)
class LiveCredential:
    jti: str
    instance_id: uuid.UUID
    agent_slug: str
    envelope_id: uuid.UUID


_credential_for_introspection = PreparedValues(
    lambda jti: (
        Credential.objects.filter(pk=jti)
        .order_by()
        .values_list(
            "status",
            "expires_at",
            "instance_id",
            "envelope_id",
            "instance__status",
            "instance__agent__slug",
            "instance__agent__status",
            "envelope__state",
            "envelope__expires_at",
        )
    ),
    sample="",
    # Whether the asking API token may still introspect, read with the credential (one statement).
    head=("caller_ok", lambda: standing_sql(len(INTROSPECTORS))),
)


def _live(row: dict | None, verified: VerifiedToken, now) -> LiveCredential | None:
    """The credential a verified token stands for, if its row is active and unexpired, matches the
    token, and everything above it is still live; None otherwise."""
    if row is None or row["status"] != Credential.Status.ACTIVE or row["expires_at"] <= now:
        return None
    if (
        spiffe_id_for(row["instance__agent__slug"], row["instance_id"]) != verified.sub
        or str(row["envelope_id"]) != verified.envelope_id
    ):
        return None
    # The cascades revoke credentials when any of these end; checked again so that a row left
    # behind by a failed cascade can never read as live.
    envelope_live = (
        row["envelope__state"] in TaskEnvelope.LIVE_STATES
        and row["envelope__expires_at"] is not None
        and row["envelope__expires_at"] > now
    )
    if not (
        envelope_live
        and row["instance__status"] == Instance.Status.ACTIVE
        and row["instance__agent__status"] == Agent.Status.ACTIVE
    ):
        return None
    return LiveCredential(verified.jti, row["instance_id"], row["instance__agent__slug"], row["envelope_id"])


def _verified_or_none(token_value: object) -> VerifiedToken | None:
    if not token_value:
        return None
    try:
        # A gateway introspects the same token many times in its few minutes of life: the
        # decisions' per-process verification memo (exp still compared on every call; the row,
        # and with it revocation, read on every call).
        return verify_token_cached(token_value)
    except TokenRejected:
        return None


@csrf_exempt
def introspect(request):
    """POST /oauth/introspect — for gateway, identity-admin and auditor API tokens.

    Every request counts against its address's limit; a request from a known caller counts against
    the caller's too. Once the caller is known (remembered for a few seconds) and the token
    verifies, one statement does the rest: both counts, the credential with its instance, agent and
    envelope, and whether the caller may still introspect (``ratelimit.hit_all_and_fetch``). What
    is answered is decided in the order it always was: the caller's standing, the limits, the
    caller's role, the request, the credential."""
    address = ("introspect-address", client_address(request), settings.MANDATE_RATE_INTROSPECT_PER_ADDRESS)
    try:
        params = _form(request)
        caller, remembered = _introspecting_caller(request)
    except OAuthError as err:
        try:
            _throttle(*address)
        except OAuthError as slowed:
            return _unauthorised(slowed)
        return _unauthorised(err)
    limits = [address, ("introspect-client", str(caller.user_id), settings.MANDATE_RATE_INTROSPECT_PER_CLIENT)]
    now = timezone.now()
    verified = _verified_or_none(params.get("token")) if caller.roles & _INTROSPECTOR_SET else None
    read = None
    if verified is not None:
        standing = standing_params(caller.token_id, now, INTROSPECTORS)
        read = ratelimit.Read(_credential_for_introspection, verified.jti, standing)
    exceeded, row = ratelimit.hit_all_and_fetch(limits, read, window=60)
    # A remembered caller is checked by this request's own read; with no row to carry it, alone.
    if row is not None:
        still = bool(row["caller_ok"])
    else:
        still = not remembered or may_still_act(caller.token_id, now, INTROSPECTORS)
    if not still:
        return _unauthorised(_refusal_of_remembered(request))
    try:
        if exceeded is not None:
            raise _slow_down(exceeded)
        _may_introspect(caller)
        _required(params, "token")
    except OAuthError as err:
        return _unauthorised(err)
    credential = None if verified is None else _live(row, verified, now)
    if credential is None:
        return _no_store(json_response({"active": False}))
    claims = verified.claims
    body = {
        "active": True,
        "sub": claims["sub"],
        # RFC 7662's client_id: the instance the credential was issued to, its SPIFFE ID: the
        # token's sub, which _live found equal to the credential row's instance.
        "client_id": claims["sub"],
        "scope": claims.get("scope", ""),
        "exp": claims["exp"],
        "iat": claims["iat"],
        "jti": claims["jti"],
        "envelope": claims["envelope"],
        "iss": claims["iss"],
        "aud": claims["aud"],
        "token_type": "Bearer",
        "instance": str(credential.instance_id),
        "agent": credential.agent_slug,
    }
    if "act" in claims:
        body["act"] = claims["act"]
    return _no_store(json_response(body))


@csrf_exempt
def revoke(request):
    """POST /oauth/revoke — RFC 7009. Presenting a valid token revokes it (the instance itself); an
    agent's owner or an admin may send it too. 200 whatever the token, as the RFC asks."""
    try:
        params = _form(request)
        user = _api_caller(request)
        token_value = _required(params, "token")
    except OAuthError as err:
        return _unauthorised(err)
    try:
        verified = verify_access_token(token_value)
    except TokenRejected:
        # Unknown, forged or expired: nothing to revoke, and the RFC says answer 200 all the same.
        return _no_store(JsonResponse({}))
    credential = Credential.objects.select_related("instance__agent").filter(jti=verified.jti).first()
    if credential is not None and credential.status == Credential.Status.ACTIVE:
        # Only a token whose signature verified gets here: possession of it is the authority.
        actor = user if user is not None else audit.Actor.of_instance(credential.instance)
        with contextlib.suppress(InvalidTransition):  # it expired a moment ago: nothing left to revoke
            revoke_credential(
                credential=credential,
                actor=actor,
                reason="revoked at /oauth/revoke",
                request=request,
                proof_of_possession=True,
            )
    return _no_store(JsonResponse({}))
