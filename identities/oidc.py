"""Workload tokens from trusted OpenID Connect issuers as instance attestation.

An admin registers a ``TrustedIssuer`` (issuer URL, where its keys are, the audience it must put in
its tokens, and rules that bind a token's claims to exactly one agent). A workload then presents a
token from that issuer:

- to register an instance (``register_attested_instance``), which records the issuer and subject;
- at ``/oauth/token`` as its ``client_assertion`` (``authenticate_workload_assertion``), instead of a
  signature by a Mandate-registered key.

Checks on every token: an asymmetric signature (RS256, ES256 or EdDSA, as the issuer's JWK says;
never ``none`` nor HMAC) by a key of the issuer, ``iss`` an enabled trusted issuer, ``aud`` holding
its audience, ``exp``/``nbf``/``iat`` within ``SKEW_SECONDS``, exactly one agent by the rules, and the
same token never twice within its lifetime (``UsedAssertion``). Every refusal is a
``WorkloadTokenRejected`` carrying the RFC 6749 error ``invalid_client``.

Issuer keys are fetched and cached per process: kept for ``JWKS_TTL_SECONDS``, refetched early when a
token names an unknown ``kid`` (key rotation) but at most once per ``JWKS_MIN_REFRESH_SECONDS`` per
issuer, so a flood of made-up ``kid`` values cannot turn into a flood of fetches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from urllib.parse import urlsplit

import jwt
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.roles import is_admin
from audit import services as audit
from audit.services import ActorLike, RequestLike
from core.errors import PermissionDenied, ValidationFailed
from core.oauth_errors import (
    WorkloadTokenRejected,
)
from identities.assertions import ClientKey, VerifiedAssertion
from identities.models import Agent, Instance, UsedAssertion
from identities.models_oidc import TrustedIssuer
from identities.services import register_instance
from identities.validators import SLUG_RE

logger = logging.getLogger(__name__)

SKEW_SECONDS = 60
MAX_TOKEN_BYTES = 16 * 1024
# Replay rows live until the token's exp; a token valid for longer than this is refused outright.
MAX_TOKEN_LIFETIME_SECONDS = getattr(settings, "MANDATE_WORKLOAD_TOKEN_MAX_LIFETIME", 24 * 3600)
JWKS_TTL_SECONDS = getattr(settings, "MANDATE_OIDC_JWKS_TTL", 600)
JWKS_MIN_REFRESH_SECONDS = getattr(settings, "MANDATE_OIDC_JWKS_MIN_REFRESH", 30)
FETCH_TIMEOUT_SECONDS = 5
MAX_DOCUMENT_BYTES = 512 * 1024
RULE_CLAIMS_MAX = 20

# The only algorithms accepted, each with the key type it needs.
_ALG_KEY = {"RS256": ("RSA", None), "ES256": ("EC", "P-256"), "EdDSA": ("OKP", "Ed25519")}
_CLAIM_NAME_RE = re.compile(r"^[A-Za-z0-9_.:/-]{1,100}$")
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


# --- issuer administration ------------------------------------------------------------------------


def _check_url(value: object, *, field_name: str, required: bool = True) -> str:
    if value in (None, "") and not required:
        return ""
    if not isinstance(value, str) or not value or len(value) > 500:
        raise ValidationFailed("must be a URL of at most 500 characters", field=field_name)
    parts = urlsplit(value)
    loopback = parts.hostname in _LOOPBACK_HOSTS
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ValidationFailed("must be an https URL (plain http only on loopback)", field=field_name)
    if not parts.hostname or parts.query or parts.fragment or parts.username or parts.password:
        raise ValidationFailed("must be a plain URL without user info, query or fragment", field=field_name)
    return value


def _check_jwks(value: object) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("keys"), list) or not value["keys"]:
        raise ValidationFailed('must be a JWK Set: {"keys": [...]}', field="jwks")
    keys = []
    for jwk in value["keys"]:
        if not isinstance(jwk, dict) or set(jwk) & {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}:
            raise ValidationFailed("every key must be a public JWK (no private or symmetric keys)", field="jwks")
        if _alg_for(jwk) is None:
            raise ValidationFailed("keys must be RSA, EC P-256 or OKP Ed25519", field="jwks")
        try:
            jwt.PyJWK(jwk, algorithm=_alg_for(jwk))
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            raise ValidationFailed(
                f"key {str(jwk.get('kid', ''))[:40]!r} is not a valid public key", field="jwks"
            ) from None
        keys.append(jwk)
    return {"keys": keys}


def _check_rules(value: object) -> list[dict]:
    if not isinstance(value, list) or not value or len(value) > 100:
        raise ValidationFailed("must be a list of 1 to 100 rules", field="rules")
    cleaned = []
    for rule in value:
        if not isinstance(rule, dict) or set(rule) - {"agent", "claims"}:
            raise ValidationFailed(
                'each rule is {"agent": "<slug>", "claims": {"<claim>": "<pattern>"}}', field="rules"
            )
        slug, claims = rule.get("agent"), rule.get("claims")
        if not isinstance(slug, str) or not SLUG_RE.fullmatch(slug):
            raise ValidationFailed("each rule names one agent by its slug", field="rules")
        if not Agent.objects.filter(slug=slug).exists():
            raise ValidationFailed(f"no agent {slug!r}", field="rules")
        if not isinstance(claims, dict) or not claims or len(claims) > RULE_CLAIMS_MAX:
            raise ValidationFailed("each rule matches at least one claim", field="rules")
        for name, pattern in claims.items():
            if not _CLAIM_NAME_RE.fullmatch(name) or not isinstance(pattern, str) or not pattern or len(pattern) > 500:
                raise ValidationFailed(f"claim {str(name)[:40]!r} needs a non-empty string pattern", field="rules")
        cleaned.append({"agent": slug, "claims": dict(claims)})
    return cleaned


def _check_admin(actor: ActorLike) -> None:
    if not is_admin(actor):
        raise PermissionDenied("only identity admins manage trusted issuers")


_EDITABLE = ("name", "issuer", "discovery_url", "jwks", "audience", "rules", "enabled")


def _clean(field_name: str, value):
    if field_name == "name":
        if not isinstance(value, str) or not value.strip() or len(value) > 100:
            raise ValidationFailed("1 to 100 characters", field="name")
        return value.strip()
    if field_name == "issuer":
        return _check_url(value, field_name="issuer")
    if field_name == "discovery_url":
        return _check_url(value, field_name="discovery_url", required=False)
    if field_name == "jwks":
        return _check_jwks(value)
    if field_name == "audience":
        if not isinstance(value, str) or not value or len(value) > 500:
            raise ValidationFailed("the audience the issuer puts in tokens meant for Mandate", field="audience")
        return value
    if field_name == "rules":
        return _check_rules(value)
    if field_name == "enabled":
        if not isinstance(value, bool):
            raise ValidationFailed("true or false", field="enabled")
        return value
    raise ValidationFailed("not an editable field", field=field_name)


def create_issuer(
    *,
    actor: ActorLike,
    name: str,
    issuer: str,
    audience: str,
    rules: list,
    discovery_url: str = "",
    jwks: dict | None = None,
    enabled: bool = True,
    request: RequestLike | None = None,
) -> TrustedIssuer:
    _check_admin(actor)
    row = TrustedIssuer(created_by=actor if getattr(actor, "pk", None) else None)
    for name_, value in (
        ("name", name),
        ("issuer", issuer),
        ("discovery_url", discovery_url),
        ("jwks", jwks),
        ("audience", audience),
        ("rules", rules),
        ("enabled", enabled),
    ):
        setattr(row, name_, _clean(name_, value))
    try:
        with transaction.atomic():
            row.save(force_insert=True)
            audit.record("issuer.created", actor=actor, target=row, after=row.snapshot(), request=request)
    except IntegrityError:
        raise ValidationFailed("a trusted issuer with this name or issuer URL exists already", field="issuer") from None
    return row


def update_issuer(
    *, issuer: TrustedIssuer, actor: ActorLike, changes: dict, request: RequestLike | None = None
) -> TrustedIssuer:
    _check_admin(actor)
    cleaned = {k: _clean(k, v) for k, v in changes.items() if k in _EDITABLE}
    try:
        with transaction.atomic():
            row = TrustedIssuer.objects.select_for_update().get(pk=issuer.pk)
            before = row.snapshot()
            fields = [k for k, v in cleaned.items() if getattr(row, k) != v]
            if not fields:
                return row
            for k in fields:
                setattr(row, k, cleaned[k])
            row.updated_at = timezone.now()
            row.save(update_fields=[*fields, "updated_at"])
            verb = "issuer.updated"
            if fields == ["enabled"]:
                verb = "issuer.enabled" if row.enabled else "issuer.disabled"
            audit.record(verb, actor=actor, target=row, before=before, after=row.snapshot(), request=request)
    except IntegrityError:
        raise ValidationFailed("a trusted issuer with this name or issuer URL exists already", field="issuer") from None
    _forget_keys(row.pk)
    return row


def disable_issuer(*, issuer: TrustedIssuer, actor: ActorLike, request: RequestLike | None = None) -> TrustedIssuer:
    """Stop trusting the issuer at once: its tokens no longer register nor authenticate instances.
    Instances it attested stay, and may still use a registered key of their own."""
    return update_issuer(issuer=issuer, actor=actor, changes={"enabled": False}, request=request)


# --- issuer keys, cached per process ---------------------------------------------------------------


@dataclass
class _KeySet:
    version: str
    keys: dict[str, dict] = field(default_factory=dict)
    fetched_at: float = 0.0
    last_attempt: float = 0.0


_cache: dict[str, _KeySet] = {}


def _clock() -> float:
    return time.monotonic()


_cache_lock = threading.Lock()


def _forget_keys(issuer_pk=None) -> None:
    with _cache_lock:
        if issuer_pk is None:
            _cache.clear()
        else:
            _cache.pop(str(issuer_pk), None)


def _fetch_json(url: str) -> dict:
    try:
        _check_url(url, field_name="url")  # never follow a document to a non-https, non-loopback place
    except ValidationFailed as exc:
        raise ValueError(f"refusing to fetch {url[:100]!r}: {exc.message}") from None
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "mandate"})  # noqa: S310 (scheme checked above)
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_SECONDS) as response:  # noqa: S310
        body = response.read(MAX_DOCUMENT_BYTES + 1)
    if len(body) > MAX_DOCUMENT_BYTES:
        raise ValueError("document too large")
    document = json.loads(body)
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    return document


def _download_keys(issuer: TrustedIssuer) -> dict[str, dict]:
    if issuer.jwks:
        jwks = issuer.jwks
    else:
        discovery = _fetch_json(issuer.effective_discovery_url)
        if discovery.get("issuer") != issuer.issuer:
            raise ValueError("the discovery document names another issuer")
        jwks = _fetch_json(str(discovery.get("jwks_uri", "")))
    keys: dict[str, dict] = {}
    for jwk in jwks.get("keys", []) if isinstance(jwks.get("keys"), list) else []:
        if isinstance(jwk, dict) and jwk.get("use", "sig") == "sig" and _alg_for(jwk):
            keys[str(jwk.get("kid", ""))] = jwk
    return keys


def _keys_of(issuer: TrustedIssuer, *, want_kid: str | None) -> dict[str, dict]:
    """The issuer's keys by kid; refetched when stale, or when ``want_kid`` is unknown (rate-limited)."""
    cache_key, version = str(issuer.pk), issuer.updated_at.isoformat()
    now = _clock()
    with _cache_lock:
        entry = _cache.get(cache_key)
        if entry is None or entry.version != version:
            entry = _KeySet(version=version)
            _cache[cache_key] = entry
        fresh = entry.fetched_at > 0 and now - entry.fetched_at < JWKS_TTL_SECONDS
        known = want_kid is None or want_kid in entry.keys
        recently_tried = entry.last_attempt and now - entry.last_attempt < JWKS_MIN_REFRESH_SECONDS
        if (fresh and known) or recently_tried:
            return entry.keys
        entry.last_attempt = now
    try:
        keys = _download_keys(issuer)
    except (OSError, ValueError) as exc:
        # Keep serving the keys we had: an issuer's brief outage must not lock every workload out.
        logger.warning("could not fetch keys of trusted issuer %s: %s", issuer.issuer, exc)
        return entry.keys
    with _cache_lock:
        entry.keys, entry.fetched_at = keys, _clock()
    return keys


# --- verification ------------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _parsed_key(jwk_json: str, alg: str) -> jwt.PyJWK:
    # Parsing an RSA key costs more than verifying with it: parse each published key once.
    return jwt.PyJWK(json.loads(jwk_json), algorithm=alg)


def _alg_for(jwk: dict) -> str | None:
    kty, crv = jwk.get("kty"), jwk.get("crv")
    for alg, (want_kty, want_crv) in _ALG_KEY.items():
        if kty == want_kty and (want_crv is None or crv == want_crv):
            if "alg" in jwk and jwk["alg"] != alg:
                return None
            return alg
    return None


def peek_issuer(token: object) -> str | None:
    """The unverified ``iss`` of a compact JWT, or None. For routing only, never for trust."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES:
        return None
    try:
        iss = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        return None
    return iss if isinstance(iss, str) else None


def is_workload_assertion(token: object) -> bool:
    """True when the token claims to come from an enabled trusted issuer (not a SPIFFE ID): the
    token endpoint then authenticates it with ``authenticate_workload_assertion``."""
    iss = peek_issuer(token)
    if not iss or iss.startswith("spiffe://"):
        return False
    return TrustedIssuer.objects.filter(issuer=iss, enabled=True).exists()


def _pattern_matches(pattern: str, value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return False
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, str(value), flags=re.DOTALL) is not None


def agents_matching(issuer: TrustedIssuer, claims: dict) -> set[str]:
    return {
        rule["agent"]
        for rule in issuer.rules
        if all(_pattern_matches(pattern, claims.get(name)) for name, pattern in rule["claims"].items())
    }


def _replay_key(iss: str, claims: dict, token: str) -> str:
    jti = claims.get("jti")
    material = f"workload\n{iss}\n{jti}" if isinstance(jti, str) and jti else f"workload-token\n{token}"
    return hashlib.sha256(material.encode()).hexdigest()


def verify_workload_token(token: object, *, consume: bool = True) -> tuple[TrustedIssuer, Agent, dict]:
    """Return (issuer, agent, claims) for a valid workload token, or raise ``WorkloadTokenRejected``.

    With ``consume`` (the default) the token is spent: presenting it again before it expires is
    refused. Call inside the caller's transaction to spend it only if the caller's work commits.
    """
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_BYTES:
        raise WorkloadTokenRejected("no workload token, or too long")
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise WorkloadTokenRejected("the workload token is not a compact JWS") from None
    alg = header.get("alg")
    if alg not in _ALG_KEY:
        raise WorkloadTokenRejected("the workload token must be signed with RS256, ES256 or EdDSA")
    iss = unverified.get("iss")
    issuer = (
        TrustedIssuer.objects.filter(issuer=iss, enabled=True).first()
        if isinstance(iss, str) and not iss.startswith("spiffe://")
        else None
    )
    if issuer is None:
        raise WorkloadTokenRejected("the workload token's issuer is not trusted")

    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or len(kid) > 200):
        raise WorkloadTokenRejected("malformed kid")
    keys = _keys_of(issuer, want_kid=kid)
    if kid is None:
        candidates = [k for k in keys.values() if _alg_for(k) == alg]
        jwk = candidates[0] if len(candidates) == 1 else None
    else:
        jwk = keys.get(kid)
    if jwk is None:
        raise WorkloadTokenRejected("the workload token is signed by a key the issuer does not publish")
    if _alg_for(jwk) != alg:
        raise WorkloadTokenRejected("the token's algorithm does not fit the issuer's key")
    try:
        key = _parsed_key(json.dumps(jwk, sort_keys=True), alg)
        claims = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=issuer.audience,
            issuer=issuer.issuer,
            leeway=SKEW_SECONDS,
            options={"require": ["iss", "aud", "exp", "iat", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise WorkloadTokenRejected("the workload token has expired") from None
    except jwt.ImmatureSignatureError:
        raise WorkloadTokenRejected("the workload token is not valid yet") from None
    except jwt.InvalidAudienceError:
        raise WorkloadTokenRejected("the workload token is not meant for this audience") from None
    except (jwt.PyJWTError, jwt.PyJWKError, ValueError, TypeError):
        raise WorkloadTokenRejected("the workload token's signature or claims do not verify") from None
    if not isinstance(claims.get("sub"), str) or not claims["sub"] or len(claims["sub"]) > 500:
        raise WorkloadTokenRejected("the workload token has no usable subject")
    now = time.time()
    if claims["exp"] - now > MAX_TOKEN_LIFETIME_SECONDS:
        raise WorkloadTokenRejected("the workload token lives too long to be accepted")

    slugs = agents_matching(issuer, claims)
    if len(slugs) != 1:
        raise WorkloadTokenRejected(
            "the workload token matches no rule of its issuer"
            if not slugs
            else "the workload token matches more than one agent; the issuer's rules must be narrower"
        )
    agent = Agent.objects.filter(slug=next(iter(slugs))).first()
    if agent is None:
        raise WorkloadTokenRejected("the workload token matches no rule of its issuer")

    if consume:
        key, expires_at = replay_record(issuer, claims, token)
        try:
            with transaction.atomic():
                UsedAssertion.objects.create(key=key, expires_at=expires_at)
        except IntegrityError:
            raise WorkloadTokenRejected("this workload token has been used already; present a fresh one") from None
    return issuer, agent, claims


def replay_record(issuer: TrustedIssuer, claims: dict, token: str) -> tuple[str, datetime]:
    """The ``UsedAssertion`` key and expiry that spend this token: sha256 of issuer and ``jti`` (of
    the whole token when it has no ``jti``), kept until ``exp`` plus the allowed skew."""
    return (
        _replay_key(issuer.issuer, claims, token),
        datetime.fromtimestamp(int(claims["exp"]) + SKEW_SECONDS, tz=UTC),
    )


# --- attested instances ----------------------------------------------------------------------------


def register_attested_instance(
    *,
    agent: Agent,
    actor: ActorLike,
    workload_token: str,
    public_jwk=None,
    label: str = "",
    request: RequestLike | None = None,
) -> Instance:
    """Register an instance of ``agent`` attested by a workload token (with or without its own key).

    The token must come from a trusted issuer whose rules bind it to this agent; the instance records
    the issuer and the token's subject, and may later authenticate with a fresh token from them.
    """
    if not (is_admin(actor) or agent.owner_id == getattr(actor, "pk", None)):
        raise PermissionDenied("only the agent's owner or an identity admin registers its instances")
    with transaction.atomic():
        try:
            issuer, matched, claims = verify_workload_token(workload_token)
        except WorkloadTokenRejected as exc:
            raise ValidationFailed(exc.description, field="workload_token") from None
        if matched.pk != agent.pk:
            raise ValidationFailed(
                f"the workload token is bound to agent {matched.slug}, not {agent.slug}", field="workload_token"
            )
        instance = register_instance(
            agent=agent,
            actor=actor,
            public_jwk=public_jwk,
            label=label,
            request=request,
            attested_issuer=issuer.issuer,
            attested_subject=claims["sub"],
        )
        audit.record(
            "instance.attested",
            actor=actor,
            target=instance,
            request=request,
            after={"issuer": issuer.issuer, "trusted_issuer": str(issuer.pk), "subject": claims["sub"]},
        )
    return instance


def _attested_instance(assertion: object, *, instance_hint: str | None, consume: bool):
    issuer, agent, claims = verify_workload_token(assertion, consume=consume)
    candidates = Instance.objects.select_related("agent").filter(
        agent=agent,
        attested_issuer=issuer.issuer,
        attested_subject=claims["sub"],
    )
    if instance_hint:
        try:
            hint = uuid.UUID(str(instance_hint).rsplit("/instance/", 1)[-1])
        except ValueError:
            raise WorkloadTokenRejected("client_id is not an instance id nor a SPIFFE ID") from None
        candidates = candidates.filter(pk=hint)
    found = list(candidates[:2])
    if not found:
        raise WorkloadTokenRejected("no instance is attested by this issuer and subject")
    if len(found) > 1:
        raise WorkloadTokenRejected("several instances share this subject; name yours in client_id")
    instance = found[0]
    if instance.status != Instance.Status.ACTIVE or instance.agent.status != Agent.Status.ACTIVE:
        raise WorkloadTokenRejected("the instance or its agent is not active")
    return instance, issuer, claims


def authenticate_workload_assertion(assertion: str, *, instance_hint: str | None = None) -> Instance:
    """The instance a workload token (presented as ``client_assertion``) authenticates, or
    ``WorkloadTokenRejected`` (``invalid_client``).

    The token must be fresh (never presented before) and match an active instance of an active agent
    attested by the same issuer and subject. Replicas sharing one subject (one Kubernetes service
    account, say) each have their own instance: they then name theirs in ``instance_hint`` (the
    instance id or SPIFFE ID, sent as ``client_id``). A refused token is not spent.
    """
    with transaction.atomic():
        instance, _, _ = _attested_instance(assertion, instance_hint=instance_hint, consume=True)
    return instance


def workload_client_assertion(assertion: str, *, instance_hint: str | None = None):
    """For ``/oauth/token``: ``authenticate_workload_assertion``'s checks without spending the token,
    answered as the endpoint's ``VerifiedAssertion``; the endpoint spends it (``consume_assertion``)
    in the transaction that mints, under the same replay key, so a replay is refused there."""
    instance, issuer, claims = _attested_instance(assertion, instance_hint=instance_hint, consume=False)
    replay_key, expires_at = replay_record(issuer, claims, assertion)
    alg = jwt.get_unverified_header(assertion)["alg"]
    return VerifiedAssertion(
        client=ClientKey(instance_id=instance.id, agent_slug=instance.agent.slug, alg=alg, key=None),
        spiffe_id=instance.spiffe_id,
        jti=str(claims.get("jti") or replay_key),
        replay_key=replay_key,
        expires_at=expires_at,
    )
