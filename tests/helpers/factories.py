"""Small builders for test data, going through the real services so audit rows exist too."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from audit.services import Actor
from identities import services as identity_services
from tasks import services as task_services


def new_ed25519_key():
    private = ed25519.Ed25519PrivateKey.generate()
    jwk = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
    return private, jwk


def new_p256_key():
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    return private, jwk


def make_agent(
    owner,
    *,
    slug="invoice-triage",
    ceiling=("github:read", "github:write", "jira:read"),
    max_envelope_seconds=8 * 3600,
    actor=None,
    approved=True,
):
    """Register an agent as ``actor`` (default its owner). Its ceiling waits for approval like any
    other; ``approved`` (the default) approves it as test data set up by the system would be, so
    tests about envelopes start from a ceiling in force."""
    agent = identity_services.register_agent(
        actor=actor or owner,
        owner=owner,
        slug=slug,
        name=slug.replace("-", " ").title(),
        ceiling=list(ceiling),
        max_envelope_seconds=max_envelope_seconds,
    )
    if approved:
        agent = approve_ceiling(agent)
    return agent


def approve_ceiling(agent, by=None):
    """Approve the agent's pending change, if any: by ``by`` (an identity admin other than the
    requester) or as the system would for its own test data."""
    if identity_services.pending_change_of(agent) is not None:
        identity_services.approve_pending_change(agent=agent, actor=by or Actor.system("test data"))
    agent.refresh_from_db()
    return agent


def make_instance(agent, *, actor=None, label="worker-1"):
    private, jwk = new_ed25519_key()
    instance = identity_services.register_instance(agent=agent, actor=actor or agent.owner, public_jwk=jwk, label=label)
    instance.private_key = private  # for tests that sign client assertions
    return instance


def make_envelope(
    instance,
    *,
    actor=None,
    scopes=("github:write",),
    resources=("repo:acme/*",),
    duration_seconds=1800,
    max_actions=50,
    may_delegate=False,
    delegation_depth=0,
    intent="triage this week's invoices",
    audiences=None,
):
    return task_services.request_envelope(
        actor=actor or instance.agent.owner,
        instance=instance,
        intent=intent,
        scopes=list(scopes),
        resources=list(resources),
        duration_seconds=duration_seconds,
        max_actions=max_actions,
        may_delegate=may_delegate,
        delegation_depth=delegation_depth,
        audiences=audiences,
    )


def as_database_owner():
    """Change evidence the way only the database's owner can (a DBA, a leaked owner password): the
    triggers refuse everyone else. On SQLite this is the connection's explicit bypass."""
    from audit.guard import evidence_bypass

    return evidence_bypass(reason="test: tampering as the database owner")
