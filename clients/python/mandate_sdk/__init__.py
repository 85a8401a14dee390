"""Mandate's SDK: the agent side (an instance key, short-lived credentials minted with it,
registration, delegation, activity reporting) and the gateway side (decisions, AuthZEN, offline
verification of credentials).

from mandate_sdk import Credentials, CredentialAuth, load_key

credentials = Credentials(
    "http://127.0.0.1:8000", spiffe_id=..., key=load_key("instance-key.pem"), envelope=...
)
httpx.get(url, auth=CredentialAuth(credentials))
"""

from mandate_sdk.activity import ActivityReporter
from mandate_sdk.api import Mandate
from mandate_sdk.cloud import EnvelopeEndsTooSoon, aws_assume_role_with_web_identity, session_seconds
from mandate_sdk.credentials import (
    AsyncCredentials,
    BearerToken,
    CredentialAuth,
    Credentials,
    MandateError,
    MintedCredential,
)
from mandate_sdk.gateway import AsyncGateway, Decision, Evaluation, Gateway
from mandate_sdk.keys import algorithm_for, generate_key, load_key, public_jwk
from mandate_sdk.verify import InvalidCredential, JwksVerifier

__all__ = [
    "ActivityReporter",
    "AsyncCredentials",
    "AsyncGateway",
    "BearerToken",
    "CredentialAuth",
    "Credentials",
    "Decision",
    "EnvelopeEndsTooSoon",
    "Evaluation",
    "Gateway",
    "InvalidCredential",
    "JwksVerifier",
    "Mandate",
    "MandateError",
    "MintedCredential",
    "algorithm_for",
    "aws_assume_role_with_web_identity",
    "generate_key",
    "load_key",
    "public_jwk",
    "session_seconds",
]
