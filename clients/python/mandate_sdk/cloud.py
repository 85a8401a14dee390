"""Cloud sessions from a Mandate credential, never longer than the envelope behind it.

A cloud provider that trusts Mandate as an OIDC issuer (AWS ``AssumeRoleWithWebIdentity``, GCP
workload identity federation, Azure federated credentials) trades a credential minted for its
audience for its own session. Mandate cannot revoke that session when the envelope ends, so ask for
no more than what is left of the envelope: ``session_seconds`` says how much that is, and
``aws_assume_role_with_web_identity`` builds the call's arguments with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mandate_sdk.credentials import MintedCredential

AWS_MIN_SESSION_SECONDS = 900  # AssumeRoleWithWebIdentity refuses shorter sessions
AWS_MAX_SESSION_SECONDS = 43_200


class EnvelopeEndsTooSoon(Exception):
    """What is left of the envelope is shorter than the shortest session the cloud grants."""


def session_seconds(
    credential: MintedCredential,
    *,
    minimum: int,
    maximum: int,
    clock: Callable[[], float] = time.time,
) -> int:
    """The longest session, in whole seconds, that ends no later than the credential's envelope,
    capped at ``maximum``. ``EnvelopeEndsTooSoon`` when that is below ``minimum`` (ask the envelope's
    approvers for more time, or do the work without a cloud session)."""
    if credential.envelope_ends_at is None:
        raise EnvelopeEndsTooSoon("this Mandate did not say when the envelope ends; refusing an unbounded session")
    left = int(credential.envelope_ends_at - clock())
    if left < minimum:
        raise EnvelopeEndsTooSoon(
            f"the envelope ends in {max(left, 0)} s, less than the shortest cloud session ({minimum} s)"
        )
    return min(left, maximum)


def aws_assume_role_with_web_identity(
    credential: MintedCredential,
    *,
    role_arn: str,
    session_name: str,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Keyword arguments for boto3's ``sts.assume_role_with_web_identity``: the credential as the web
    identity token (mint it with ``audience="sts.amazonaws.com"``, which the envelope must list) and
    a ``DurationSeconds`` that ends with the envelope."""
    return {
        "RoleArn": role_arn,
        "RoleSessionName": session_name,
        "WebIdentityToken": credential.access_token,
        "DurationSeconds": session_seconds(
            credential, minimum=AWS_MIN_SESSION_SECONDS, maximum=AWS_MAX_SESSION_SECONDS, clock=clock
        ),
    }
