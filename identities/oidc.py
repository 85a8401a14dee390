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

Issuer keys (unless a JWK Set is pinned) are fetched through ``core.outbound`` (https, public
addresses only, no redirects, one deadline) when an admin saves the issuer — an address the rules
refuse refuses the save — and stored on the row; the ``refresh_issuer_keys`` job refreshes them
every ``MANDATE_ISSUER_KEYS_REFRESH_SECONDS``. A request refetches only for a ``kid`` the stored keys
lack (key rotation), only when the token is otherwise plausible (signed with an allowed algorithm,
for this audience, unexpired, bound by the rules to one agent) and at most once per
``JWKS_MIN_REFRESH_SECONDS`` per issuer across every process (the shared cache), so neither an
unsigned token nor a flood of made-up ``kid`` values turns into fetches.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import re
import time
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from urllib.parse import urlsplit

import jwt
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.roles import is_admin
from audit import services as audit
from audit.services import ActorLike, RequestLike
from core import outbound
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
JWKS_MIN_REFRESH_SECONDS = getattr(settings, "MANDATE_OIDC_JWKS_MIN_REFRESH", 30)
MAX_KEYS = 50
RULE_CLAIMS_MAX = 20

# The only algorithms accepted, each with the key type it needs.
_ALG_KEY = {"RS256": ("RSA", None), "ES256": ("EC", "P-256"), "EdDSA": ("OKP", "Ed25519")}
_CLAIM_NAME_RE = re.compile(r"^[A-Za-z0-9_.:/-]{1,100}$")


# --- issuer administration ------------------------------------------------------------------------


def _check_url(value: object, *, field_name: str, required: bool = True) -> str:
    if value in (None, "") and not required:
        return ""
    if not isinstance(value, str) or not value or len(value) > 500:
        raise ValidationFailed("must be a URL of at most 500 characters", field=field_name)
    try:
        target = outbound.check_url(value)  # https (http only to loopback in development), no user info
        if _is_ip(target.host):  # an address is checked now; a name when the keys are fetched
            why = outbound.address_refusal(target.host, target)
            if why:
                raise outbound.OutboundRefused(f"{target.host} is {why}; Mandate does not fetch from there")
    except outbound.OutboundRefused as exc:
        raise ValidationFailed(str(exc), field=field_name) from None
    parts = urlsplit(value)
    if parts.query or parts.fragment:
        raise ValidationFailed("must be a plain URL without user info, query or fragment", field=field_name)
    return value


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


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
    row.fetched_jwks, row.keys_fetched_at, row.keys_error = _fetch_on_save(row)
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
    fetched = None
    if {"issuer", "discovery_url", "jwks"} & cleaned.keys():
        planned = TrustedIssuer.objects.get(pk=issuer.pk)
        if any(getattr(planned, k) != cleaned[k] for k in ("issuer", "discovery_url", "jwks") if k in cleaned):
            for k, v in cleaned.items():
                setattr(planned, k, v)
            fetched = _fetch_on_save(planned)  # before the lock: a fetch may take seconds
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
            key_fields = []
            if fetched is not None:
                row.fetched_jwks, row.keys_fetched_at, row.keys_error = fetched
                key_fields = ["fetched_jwks", "keys_fetched_at", "keys_error"]
            row.save(update_fields=[*fields, *key_fields, "updated_at"])
            verb = "issuer.updated"
            if fields == ["enabled"]:
                verb = "issuer.enabled" if row.enabled else "issuer.disabled"
            audit.record(verb, actor=actor, target=row, before=before, after=row.snapshot(), request=request)
    except IntegrityError:
        raise ValidationFailed("a trusted issuer with this name or issuer URL exists already", field="issuer") from None
    return row


def disable_issuer(*, issuer: TrustedIssuer, actor: ActorLike, request: RequestLike | None = None) -> TrustedIssuer:
    """Stop trusting the issuer at once: its tokens no longer register nor authenticate instances.
    Instances it attested stay, and may still use a registered key of their own."""
    return update_issuer(issuer=issuer, actor=actor, changes={"enabled": False}, request=request)


# --- issuer keys: fetched on save, refreshed in the background, stored on the row ------------------


def _download_jwks(issuer: TrustedIssuer) -> dict:
    """The issuer's JWK Set, fetched through its discovery document, keeping only usable public keys.
    ``OutboundRefused`` / ``OutboundFailed`` (both ``ValueError``) say why not."""
    discovery = outbound.fetch_json(issuer.effective_discovery_url)
    if discovery.get("issuer") != issuer.issuer:
        raise outbound.OutboundFailed("the discovery document names another issuer")
    jwks = outbound.fetch_json(str(discovery.get("jwks_uri", "")))
    return {"keys": list(_usable_keys(jwks).values())[:MAX_KEYS]}


def _usable_keys(jwks: object) -> dict[str, dict]:
    keys: dict[str, dict] = {}
    listed = jwks.get("keys") if isinstance(jwks, dict) else None
    for jwk in listed if isinstance(listed, list) else []:
        if (
            isinstance(jwk, dict)
            and jwk.get("use", "sig") == "sig"
            and _alg_for(jwk)
            and not set(jwk) & {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}
        ):
            keys[str(jwk.get("kid", ""))] = jwk
    return keys


def _fetch_on_save(row: TrustedIssuer) -> tuple[dict | None, datetime | None, str]:
    """(fetched JWK Set, when, error) for a row about to be saved. An address the outbound rules
    refuse refuses the save; an issuer that cannot be reached now is saved with the error noted
    (the background job and the next unknown kid try again)."""
    if row.jwks:
        return None, None, ""
    try:
        return _download_jwks(row), timezone.now(), ""
    except outbound.OutboundRefused as exc:
        raise ValidationFailed(str(exc), field="discovery_url" if row.discovery_url else "issuer") from None
    except ValueError as exc:
        logger.warning("could not fetch keys of trusted issuer %s: %s", row.issuer, exc)
        return None, None, str(exc)[:300]


def refresh_keys(issuer: TrustedIssuer) -> dict[str, dict]:
    """Fetch the issuer's keys now and store them on its row; the keys by kid (the ones it had when
    the fetch fails: an issuer's brief outage must not lock every workload out)."""
    if issuer.jwks:
        return _usable_keys(issuer.jwks)
    try:
        jwks = _download_jwks(issuer)
    except ValueError as exc:
        logger.warning("could not fetch keys of trusted issuer %s: %s", issuer.issuer, exc)
        issuer.keys_error = str(exc)[:300]
        TrustedIssuer.objects.filter(pk=issuer.pk).update(keys_error=issuer.keys_error)
        return _usable_keys(issuer.fetched_jwks)
    before, after = sorted(_usable_keys(issuer.fetched_jwks)), sorted(_usable_keys(jwks))
    with transaction.atomic():
        TrustedIssuer.objects.filter(pk=issuer.pk).update(
            fetched_jwks=jwks, keys_fetched_at=timezone.now(), keys_error=""
        )
        if before != after:
            audit.record(
                "issuer.keys_fetched",
                actor=audit.Actor.system("issuer-keys"),
                target=issuer,
                before={"kids": before},
                after={"kids": after},
            )
    issuer.fetched_jwks, issuer.keys_error = jwks, ""
    return _usable_keys(jwks)


def refresh_all_issuer_keys() -> int:
    """The background refresh: every enabled issuer without pinned keys. Returns how many succeeded."""
    refreshed = 0
    for issuer in TrustedIssuer.objects.filter(enabled=True, jwks__isnull=True).order_by("name"):
        refresh_keys(issuer)
        refreshed += 0 if issuer.keys_error else 1
    return refreshed


def _keys_of(issuer: TrustedIssuer, *, want_kid: str | None, may_refetch: bool = False) -> dict[str, dict]:
    """The issuer's stored keys by kid; refetched once (throttled across processes) when
    ``want_kid`` is unknown and the caller found the token worth it."""
    keys = _usable_keys(issuer.jwks or issuer.fetched_jwks)
    known = want_kid in keys if want_kid is not None else bool(keys)
    if issuer.jwks or known or not may_refetch:
        return keys
    if not cache.add(f"oidc-refetch:{issuer.pk}", 1, timeout=JWKS_MIN_REFRESH_SECONDS):
        return keys
    return refresh_keys(issuer)


def _worth_a_refetch(token: str, issuer: TrustedIssuer, unverified: dict) -> bool:
    """Whether a token whose key is unknown could verify once the keys are refetched: signed (a
    signature part), for Mandate's audience, unexpired, and bound by the rules to one agent."""
    if not token.rsplit(".", 1)[-1]:
        return False
    aud = unverified.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    exp, iat, now = unverified.get("exp"), unverified.get("iat"), time.time()
    if issuer.audience not in audiences or not isinstance(exp, int | float) or not isinstance(iat, int | float):
        return False
    if exp < now - SKEW_SECONDS or iat > now + SKEW_SECONDS or exp - now > MAX_TOKEN_LIFETIME_SECONDS:
        return False
    if not isinstance(unverified.get("sub"), str) or not unverified["sub"]:
        return False
    return len(agents_matching(issuer, unverified)) == 1


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
    keys = _keys_of(issuer, want_kid=kid, may_refetch=_worth_a_refetch(token, issuer, unverified))
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
