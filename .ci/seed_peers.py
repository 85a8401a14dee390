"""Seed two agent owners as peers, each with an API token, an agent, an instance, an envelope and
a credential, for the fuzzer and the isolation check, and an identity admin with an API token (the
fuzzer runs as both). Writes their tokens and ids as JSON.

    DATABASE_URL=... python .ci/seed_peers.py out.json
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

import django

django.setup()

from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from django.utils import timezone  # noqa: E402
from jwt.algorithms import OKPAlgorithm  # noqa: E402

from accounts.models import ApiToken  # noqa: E402
from accounts.roles import AGENT_OWNER, IDENTITY_ADMIN  # noqa: E402
from identities import services as identity_services  # noqa: E402
from identities.models import Credential  # noqa: E402
from tasks import services as task_services  # noqa: E402


def user(username: str, role: str):
    person, _ = get_user_model().objects.get_or_create(username=username, defaults={"email": f"{username}@ci.test"})
    person.groups.add(Group.objects.get_or_create(name=role)[0])
    return person


def token(person) -> str:
    secret = ApiToken.new_secret()
    ApiToken.objects.create(user=person, name="ci", prefix=secret[:8], digest=ApiToken.digest_of(secret))
    return secret


def public_jwk() -> dict:
    return OKPAlgorithm.to_jwk(ed25519.Ed25519PrivateKey.generate().public_key(), as_dict=True)


def seed(username: str, admin) -> dict:
    owner = user(username, AGENT_OWNER)
    suffix = secrets.token_hex(3)
    agent = identity_services.register_agent(
        actor=owner,
        slug=f"{username}-agent-{suffix}",
        name=f"{username}'s agent",
        ceiling=["github:read", "github:write", "jira:read"],
        max_envelope_seconds=3600,
    )
    agent = identity_services.approve_pending_change(agent=agent, actor=admin, comment="ci")
    instance = identity_services.register_instance(agent=agent, actor=owner, public_jwk=public_jwk(), label="ci")
    envelope = task_services.request_envelope(
        actor=owner,
        instance=instance,
        intent="ci peer",
        scopes=["github:write"],
        resources=["repo:ci/*"],
        duration_seconds=1800,
        max_actions=10,
    )
    task_services.approve_envelope(envelope=envelope, actor=admin)
    now = timezone.now()
    credential = Credential.objects.create(
        jti=secrets.token_hex(16),
        instance=instance,
        envelope=envelope,
        scopes=["github:write"],
        audience="mandate",
        issued_at=now,
        expires_at=now + timedelta(hours=1),
        kid="ci",
    )
    return {
        "username": username,
        "token": token(owner),
        "agent": agent.slug,
        "agent_id": str(agent.id),
        "instance": str(instance.id),
        "envelope": str(envelope.id),
        "credential": credential.jti,
    }


def main() -> None:
    admin = user("ci-admin", IDENTITY_ADMIN)
    peers = {
        "a": seed("alice", admin),
        "b": seed("bob", admin),
        "admin": {"username": admin.username, "token": token(admin)},
    }
    Path(sys.argv[1]).write_text(json.dumps(peers, indent=2))
    print(f"seeded peers alice and bob ({peers['a']['agent']}, {peers['b']['agent']})")


if __name__ == "__main__":
    main()
