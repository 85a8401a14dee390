"""The demo world a newcomer signs in to: the demo people, and their agents, instances with clones
and sub-agents, envelopes in every state (made through the real services, so the audit trail is
real too), credentials and activity. Run by ``seed_demo``; the posture history is in
``console/demo/posture.py``."""

from __future__ import annotations

import uuid
from datetime import timedelta

from cryptography.hazmat.primitives.asymmetric import ed25519
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone
from jwt.algorithms import OKPAlgorithm

from accounts.roles import AGENT_OWNER, AUDITOR, IDENTITY_ADMIN
from identities import services as ids
from identities.models import Credential, Instance
from tasks import lifecycle
from tasks import services as tasks
from tasks.models import ActivityEvent, TaskEnvelope
from tasks.policy import active_policy

DEFAULT_PASSWORD = "mandate-demo"

USERS = [
    ("ada", "Ada Admin", [IDENTITY_ADMIN]),
    ("alan", "Alan Admin", [IDENTITY_ADMIN]),
    ("olivia", "Olivia Owner", [AGENT_OWNER]),
    ("oscar", "Oscar Owner", [AGENT_OWNER]),
    ("audrey", "Audrey Auditor", [AUDITOR]),
]

AGENTS = [
    (
        "invoice-triage",
        "Invoice triage",
        "olivia",
        ["github:read", "github:write", "jira:read", "jira:write", "payments:approve"],
        8 * 3600,
    ),
    ("release-notes", "Release notes writer", "olivia", ["github:read", "github:write", "slack:post"], 4 * 3600),
    ("support-summariser", "Support ticket summariser", "oscar", ["jira:read", "jira:write", "zendesk:read"], 8 * 3600),
    ("data-sync", "CRM data sync", "oscar", ["crm:read", "crm:write", "s3:write"], 2 * 3600),
]


def _jwk():
    return OKPAlgorithm.to_jwk(ed25519.Ed25519PrivateKey.generate().public_key(), as_dict=True)


def seed_people(password: str = DEFAULT_PASSWORD) -> tuple[dict, set[str]]:
    """The demo people, and the names of those whose password this run set (new ones only)."""
    User = get_user_model()
    users = {}
    given = set()
    for username, full_name, roles in USERS:
        user, created = User.objects.get_or_create(
            username=username,
            defaults={
                "email": f"{username}@example.test",
                "first_name": full_name.split()[0],
                "last_name": full_name.split()[1],
            },
        )
        if created:
            user.set_password(password)
            user.save()
            given.add(username)
        for role in roles:
            user.groups.add(Group.objects.get_or_create(name=role)[0])
        users[username] = User.objects.get(pk=user.pk)  # fresh: no cached roles
    return users, given


def seed_world(users: dict) -> None:
    """Agents, instances with clones and sub-agents, envelopes in every state, credentials and
    activity, made through the real services so the audit trail is real too. Run it once, in a
    transaction (the command skips it when the demo agents exist)."""
    now = timezone.now()
    ada, alan = users["ada"], users["alan"]
    agents = {}
    for slug, name, owner, ceiling, longest in AGENTS:
        agent = ids.register_agent(
            actor=ada,
            owner=users[owner],
            slug=slug,
            name=name,
            ceiling=ceiling,
            max_envelope_seconds=longest,
            description=f"Demo agent owned by {owner}.",
        )
        # A ceiling is in force once an identity admin other than the requester approves it.
        agents[slug] = ids.approve_pending_change(agent=agent, actor=alan, comment="demo: ceiling reviewed")
    inst = {}
    for slug, agent in agents.items():
        owner = agent.owner
        inst[slug] = ids.register_instance(agent=agent, actor=owner, public_jwk=_jwk(), label=f"{slug}-1")
    triage = agents["invoice-triage"]
    clone = ids.clone_instance(
        parent=inst["invoice-triage"], actor=triage.owner, public_jwk=_jwk(), label="invoice-triage-1-clone"
    )
    sub = ids.spawn_subagent(parent=inst["invoice-triage"], actor=triage.owner, public_jwk=_jwk(), label="ocr-subagent")
    ids.spawn_subagent(parent=clone, actor=triage.owner, public_jwk=_jwk(), label="clone-ledger-subagent")
    second = ids.register_instance(
        agent=agents["support-summariser"], actor=users["oscar"], public_jwk=_jwk(), label="support-summariser-2"
    )

    def req(
        instance,
        intent,
        scopes,
        *,
        actor=None,
        duration=1800,
        actions=50,
        resources=("repo:acme/*",),
        delegate=False,
        depth=0,
    ):
        return tasks.request_envelope(
            actor=actor or instance.agent.owner,
            instance=instance,
            intent=intent,
            scopes=list(scopes),
            resources=list(resources),
            duration_seconds=duration,
            max_actions=actions,
            may_delegate=delegate,
            delegation_depth=depth,
        )

    # Waiting in the queue: medium, high (one of two approvals in), and one an admin requested.
    req(
        inst["invoice-triage"],
        "Label and route this week's supplier invoices",
        ["jira:write"],
        resources=["project:FIN"],
    )
    high = req(
        inst["invoice-triage"],
        "Approve payment runs under 5,000 EUR for the March close",
        ["payments:approve", "jira:read"],
        resources=["payments:eu/*"],
        duration=3600,
        actions=20,
    )
    tasks.approve_envelope(envelope=high, actor=alan, comment="Amounts capped, fine by me")
    req(
        inst["data-sync"],
        "Backfill CRM contacts from the Q1 import",
        ["crm:write", "s3:write"],
        actor=ada,
        resources=["crm:contacts", "s3://exports/q1/*"],
        duration=3600,
    )
    req(
        second,
        "Summarise the enterprise escalation queue nightly",
        ["jira:write", "zendesk:read"],
        resources=["zendesk:queue/enterprise"],
        duration=3600,
        actions=200,
    )

    # Approved, not yet used; active with credentials (and a delegated one); auto-approved low risk.
    approved = req(inst["release-notes"], "Draft release notes for v2.4", ["github:write"], resources=["repo:acme/app"])
    tasks.approve_envelope(envelope=approved, actor=ada, comment="ok")
    active = req(
        inst["invoice-triage"],
        "Reconcile February invoices against Jira tickets",
        ["github:read", "jira:read", "jira:write"],
        resources=["project:FIN", "repo:acme/ledger"],
        duration=2 * 3600,
        actions=500,
        delegate=True,
        depth=1,
    )
    tasks.approve_envelope(envelope=active, actor=ada, comment="Routine month-end work")
    low = req(
        inst["support-summariser"],
        "Read today's new tickets",
        ["jira:read"],
        duration=900,
        actions=40,
        resources=["project:SUP"],
    )
    ending = req(
        inst["data-sync"],
        "Nightly CRM read for the churn report",
        ["crm:read"],
        resources=["crm:accounts"],
        duration=1500,
    )

    def approve_fully(envelope, comment="ok"):
        for admin in (ada, alan):
            envelope.refresh_from_db()
            if envelope.state == TaskEnvelope.State.PENDING:
                tasks.approve_envelope(envelope=envelope, actor=admin, comment=comment)
        envelope.refresh_from_db()

    approve_fully(ending, "nightly job")
    creds = []
    with transaction.atomic():
        for envelope, instance, ttl in (
            (active, inst["invoice-triage"], 600),
            (low, inst["support-summariser"], 240),
            (ending, inst["data-sync"], 840),
        ):
            envelope.refresh_from_db()
            credential = Credential.objects.create(
                jti=uuid.uuid4().hex,
                instance=instance,
                envelope=envelope,
                scopes=envelope.scopes,
                audience="mandate",
                issued_at=now,
                expires_at=min(now + timedelta(seconds=ttl), envelope.expires_at),
                kid="demo-key",
            )
            lifecycle.activate_on_first_credential(envelope=envelope, actor=_instance_actor(instance))
            creds.append(credential)
        Credential.objects.create(
            jti=uuid.uuid4().hex,
            instance=sub,
            envelope=active,
            scopes=["jira:read"],
            audience="mandate",
            issued_at=now,
            expires_at=creds[0].expires_at - timedelta(seconds=120),
            kid="demo-key",
            parent=creds[0],
            act_chain=[inst["invoice-triage"].spiffe_id],
        )
        # History: credentials that already ran out.
        Credential.objects.create(
            jti=uuid.uuid4().hex,
            instance=inst["invoice-triage"],
            envelope=active,
            scopes=["jira:read"],
            audience="mandate",
            issued_at=now - timedelta(minutes=20),
            expires_at=now - timedelta(minutes=15),
            kid="demo-key",
            status=Credential.Status.EXPIRED,
        )

    # Ended envelopes: completed, revoked, denied, expired, superseded.
    done_env = req(inst["release-notes"], "Tag release v2.3", ["github:write"], resources=["repo:acme/app"])
    tasks.approve_envelope(envelope=done_env, actor=alan, comment="ok")
    lifecycle.complete_envelope(envelope=done_env, actor=users["olivia"])
    revoked = req(
        inst["data-sync"],
        "Push enriched contacts to the warehouse",
        ["crm:write", "s3:write"],
        resources=["s3://warehouse/*"],
        duration=3600,
    )
    approve_fully(revoked, "watch the volume")
    lifecycle.revoke_envelope(envelope=revoked, actor=ada, reason="drift: wrote outside the export bucket")
    denied = req(
        inst["support-summariser"],
        "Bulk-close stale tickets",
        ["jira:write"],
        resources=["project:*"],
        actions=5000,
    )
    tasks.deny_envelope(envelope=denied, actor=ada, comment="Too broad: every project; narrow it to SUP")
    expired = req(
        inst["release-notes"], "Post release digest to #eng", ["slack:post"], resources=["slack:#eng"], duration=600
    )
    approve_fully(expired)
    # Its ten minutes ran out a while ago: move its past back, then let the real expiry happen now.
    TaskEnvelope.objects.filter(pk=expired.pk).update(
        created_at=now - timedelta(minutes=25),
        approved_at=now - timedelta(minutes=24),
        expires_at=now - timedelta(minutes=14),
    )
    lifecycle.expire_envelope(envelope_id=expired.id, now=timezone.now())
    old = req(
        inst["support-summariser"],
        "Summarise the SUP backlog",
        ["jira:read"],
        resources=["project:SUP"],
        duration=3600,
        actions=300,
        delegate=True,
        depth=1,
    )
    tasks.approve_envelope(envelope=old, actor=alan, comment="fine")
    lifecycle.retask_envelope(
        envelope=old,
        actor=users["oscar"],
        intent="Summarise the SUP and ENT backlogs",
        scopes=["jira:read", "zendesk:read"],
        resources=["project:SUP", "zendesk:queue/*"],
        duration_seconds=3600,
        max_actions=300,
        may_delegate=False,
        delegation_depth=0,
    )

    # A stale session: a live instance that stopped acting an hour ago.
    Instance.objects.filter(pk=second.pk).update(
        stale=True, stale_since=now - timedelta(minutes=40), last_seen_at=now - timedelta(hours=1)
    )
    Instance.objects.filter(pk=inst["invoice-triage"].pk).update(last_seen_at=now - timedelta(seconds=30))
    _activity(now, active, low, ending, revoked, inst, sub, creds)


def _activity(now, active, low, ending, revoked, inst, sub, creds) -> None:
    triage = inst["invoice-triage"]
    plan = [
        (active, triage, "decision", "jira:read", "project:FIN/FIN-101", True, "ok", False),
        (active, triage, "tool_call", "jira:write", "project:FIN/FIN-101", True, "ok", False),
        (active, triage, "decision", "github:read", "repo:acme/ledger", True, "ok", False),
        (active, sub, "decision", "jira:read", "project:FIN/FIN-102", True, "ok", False),
        (active, triage, "decision", "github:write", "repo:acme/ledger", False, "scope_not_granted", True),
        (active, triage, "secret_access", "vault:read", "secret/fin/erp-api", None, "", False),
        (low, inst["support-summariser"], "decision", "jira:read", "project:SUP/SUP-88", True, "ok", False),
        (
            low,
            inst["support-summariser"],
            "decision",
            "jira:write",
            "project:SUP/SUP-88",
            False,
            "scope_not_granted",
            True,
        ),
        (ending, inst["data-sync"], "decision", "crm:read", "crm:accounts", True, "ok", False),
        (
            revoked,
            inst["data-sync"],
            "decision",
            "s3:write",
            "s3://private/hr/*",
            False,
            "resource_not_granted",
            True,
        ),
        (
            revoked,
            inst["data-sync"],
            "privilege_escalation",
            "iam:assume",
            "role/admin",
            False,
            "policy_forbids",
            True,
        ),
    ]
    # Each envelope gets a past: requested this many minutes ago, its activity spread between then
    # and its end (now for the live ones), its credentials never outliving it.
    history = {active.pk: 95, low.pk: 8, ending.pk: 15, revoked.pk: 70}
    windows = {}
    for pk, minutes in history.items():
        envelope = TaskEnvelope.objects.get(pk=pk)
        shift = timedelta(minutes=minutes)
        moved = {"created_at": envelope.created_at - shift}
        for name in ("approved_at", "expires_at"):
            if getattr(envelope, name) is not None:
                moved[name] = getattr(envelope, name) - shift + timedelta(minutes=1)
        TaskEnvelope.objects.filter(pk=pk).update(**moved)
        for credential in Credential.objects.filter(envelope_id=pk, expires_at__gt=moved["expires_at"]):
            Credential.objects.filter(pk=credential.pk).update(expires_at=moved["expires_at"])
        end = min(envelope.ended_at or now, now) - timedelta(seconds=20)
        windows[pk] = (moved.get("approved_at") or moved["created_at"], end)
    revoke_after = active_policy().drift_revoke_after
    drift_cap = revoke_after - 1 if revoke_after else None  # reaching the limit would have revoked it
    rows = []
    for envelope in (active, low, ending, revoked):
        entries = [entry for _ in range(3) for entry in plan if entry[0].pk == envelope.pk]
        start, end = windows[envelope.pk]
        step = (end - start) / (len(entries) + 1)
        drifted = 0
        for i, (_, instance, kind, scope, resource, allow, reason, drift) in enumerate(entries):
            if drift and drift_cap is not None and drifted >= drift_cap:
                continue
            drifted += drift
            at = start + step * (i + 1)
            rows.append(
                ActivityEvent(
                    kind=kind,
                    agent_id=instance.agent_id,
                    instance=instance,
                    envelope=envelope,
                    scope=scope,
                    resource=resource,
                    allow=allow,
                    reason=reason,
                    drift=drift,
                    outcome="success" if kind == "tool_call" else "",
                    occurred_at=at,
                    recorded_at=at,
                    reported_by="demo-gateway",
                    policy_version=envelope.policy_version,
                )
            )
    rows.sort(key=lambda row: row.occurred_at)  # ids follow time, as they do in real traffic
    ActivityEvent.objects.bulk_create(rows)
    for envelope in (active, low, ending, revoked):
        mine = [row for row in rows if row.envelope_id == envelope.pk]
        drifts = [row.occurred_at for row in mine if row.drift]
        TaskEnvelope.objects.filter(pk=envelope.pk).update(
            actions_used=sum(1 for row in mine if row.kind == "decision" and row.allow),
            drift_count=len(drifts),
            last_drift_at=max(drifts, default=None),
        )


def _instance_actor(instance):
    from audit.services import Actor

    return Actor.of_instance(instance)
