"""Mandate's agent-side SDK: an instance key, and short-lived credentials minted with it.

from mandate_sdk import Credentials, CredentialAuth, load_key

credentials = Credentials(
    "http://127.0.0.1:8000", spiffe_id=..., key=load_key("instance-key.pem"), envelope=...
)
httpx.get(url, auth=CredentialAuth(credentials))
"""

from mandate_sdk.credentials import CredentialAuth, Credentials, MandateError, MintedCredential
from mandate_sdk.keys import algorithm_for, generate_key, load_key, public_jwk

__all__ = [
    "CredentialAuth",
    "Credentials",
    "MandateError",
    "MintedCredential",
    "algorithm_for",
    "generate_key",
    "load_key",
    "public_jwk",
]
