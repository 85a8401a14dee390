"""Demo data for the posture page: envelopes over the last weeks with uneven use, denials and drift,
credentials of various lifetimes, standing-access patterns, stale and orphaned identities, and
standing exceptions in every state. Called by ``seed_demo`` (``seed_posture_demo(...)``); safe to run
twice (it does nothing when its agents exist already).
"""

from __future__ import annotations

import os
import random
import uuid
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from accounts.roles import AGENT_OWNER, AUDITOR, IDENTITY_ADMIN
from identities import services as identity_services
from identities.models import Agent, Credential, Instance
from posture import standing_exceptions as exception_services
from tasks import lifecycle
from tasks import services as task_services
from tasks.models import ActivityEvent, TaskEnvelope
from tasks.policy import active_policy

DEMO_AGENTS = ("expense-review", "repo-gardener", "nightly-sync", "ticket-bot")


def _user(username: str, *roles: str, active: bool = True):
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(username=username, defaults={"email": f"{username}@example.test"})
    if created:  # a password only when the operator gave one (MANDATE_PASSWORD), as add_user does
        password = os.environ.get("MANDATE_PASSWORD")
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
    user.is_active = active
    user.save()
    for role in roles:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def _key():
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from jwt.algorithms import OKPAlgorithm

    return OKPAlgorithm.to_jwk(ed25519.Ed25519PrivateKey.generate().public_key(), as_dict=True)


def _envelope(
    instance,
    requester,
    approvers,
    *,
    intent,
    scopes,
    resources,
    duration,
    approved_at,
    wait,
    ended=True,
    actions_used=0,
    max_actions=200,
    ran_for=0.8,
):
    env = task_services.request_envelope(
        actor=requester,
        instance=instance,
        intent=intent,
        scopes=scopes,
        resources=resources,
        duration_seconds=duration,
        max_actions=max_actions,
    )
    for admin in approvers[: env.required_approvals]:
        if env.state == TaskEnvelope.State.PENDING:
            env = task_services.approve_envelope(envelope=env, actor=admin)
    fields = {
        "created_at": approved_at - wait,
        "approved_at": approved_at,
        "expires_at": approved_at + timedelta(seconds=duration),
        "actions_used": actions_used,
    }
    if ended:
        ended_at = max(
            min(approved_at + timedelta(seconds=duration * ran_for), timezone.now() - timedelta(minutes=1)), approved_at
        )
        fields.update(state=TaskEnvelope.State.COMPLETED, ended_at=ended_at)
    TaskEnvelope.objects.filter(pk=env.pk).update(**fields)
    env.refresh_from_db()
    return env


def seed_posture_demo(*, activity_per_envelope: int = 60, seed: int = 7, stdout=None) -> dict:
    if Agent.objects.filter(slug__in=DEMO_AGENTS).exists():
        return {"skipped": True}
    rng = random.Random(seed)
    now = timezone.now()
    admin = _user("ada", IDENTITY_ADMIN)
    admin2 = _user("alan", IDENTITY_ADMIN)
    owner = _user("olivia", AGENT_OWNER)
    _user("audrey", AUDITOR)
    leaver = _user("lee", AGENT_OWNER)
    approvers = [admin, admin2]
    ceiling = ["github:read", "github:write", "jira:read", "jira:write"]

    agents = {}
    with transaction.atomic():
        for slug, who, max_s in (
            ("expense-review", owner, 4 * 3600),
            ("repo-gardener", owner, 3600),
            ("nightly-sync", owner, 4 * 3600),
            ("ticket-bot", leaver, 4 * 3600),
        ):
            agent = identity_services.register_agent(
                actor=admin,
                owner=who,
                slug=slug,
                name=slug.replace("-", " ").title(),
                ceiling=ceiling,
                max_envelope_seconds=max_s,
            )
            # A ceiling is in force once an identity admin other than the requester approves it.
            agents[slug] = identity_services.approve_pending_change(
                agent=agent, actor=admin2, comment="demo: ceiling reviewed"
            )
    inst = {
        slug: identity_services.register_instance(agent=a, actor=admin, public_jwk=_key(), label=f"{slug}-1")
        for slug, a in agents.items()
    }
    Instance.objects.filter(pk__in=[i.pk for i in inst.values()]).update(last_seen_at=now - timedelta(minutes=5))

    envelopes, activity, creds = [], [], []
    # expense-review: asks for read+write on GitHub and Jira, uses mostly github:read.
    for day in range(28, 0, -1):
        approved = now - timedelta(days=day, hours=rng.randint(0, 8))
        wait = timedelta(minutes=rng.choice([2, 3, 12, 25, 50, 90, 200, 600, 1500]))
        env = _envelope(
            inst["expense-review"],
            owner,
            approvers,
            intent=f"triage invoices batch {29 - day}",
            scopes=ceiling,
            resources=["repo:acme/*", "project:FIN"],
            duration=3600,
            approved_at=approved,
            wait=wait,
            actions_used=activity_per_envelope,
        )
        envelopes.append(env)
    # repo-gardener: always asks for its maximum duration.
    for day in (20, 13, 6, 2):
        envelopes.append(
            _envelope(
                inst["repo-gardener"],
                owner,
                approvers,
                intent="prune stale branches",
                scopes=["github:read", "github:write"],
                resources=["repo:acme/*"],
                duration=3600,
                approved_at=now - timedelta(days=day),
                wait=timedelta(minutes=8),
                actions_used=20,
            )
        )
    # nightly-sync: back-to-back renewals of one intent (standing access dressed as JIT).
    start = now - timedelta(days=3)
    for i in range(6):
        envelopes.append(
            _envelope(
                inst["nightly-sync"],
                owner,
                approvers,
                intent="sync jira to github",
                scopes=["jira:read", "github:write"],
                resources=["project:OPS", "repo:acme/ops"],
                duration=4 * 3600,
                approved_at=start + timedelta(hours=4 * i, minutes=2 * i),
                wait=timedelta(minutes=1),
                actions_used=30,
                ran_for=1.0,
            )
        )
    # ticket-bot: its owner left; a live envelope it still holds.
    envelopes.append(
        _envelope(
            inst["ticket-bot"],
            leaver,
            approvers,
            intent="close duplicate tickets",
            scopes=["jira:read", "jira:write"],
            resources=["project:SUP"],
            duration=3600,
            approved_at=now - timedelta(minutes=20),
            wait=timedelta(minutes=4),
            ended=False,
            actions_used=3,
        )
    )

    used_by_intent = {
        "triage": ["github:read"] * 8 + ["jira:read"] * 2,
        "prune": ["github:read", "github:write"],
        "sync": ["jira:read", "github:write"],
        "close": ["jira:read"],
    }
    # Consistent with itself: nothing after now or after its envelope ended, nothing before it was
    # approved, and no envelope holding as much drift as the policy revokes at.
    revoke_after = active_policy().drift_revoke_after
    drift_cap = revoke_after - 1 if revoke_after else None
    for env in envelopes:
        key = env.intent.split()[0]
        uses = used_by_intent.get(key, env.scopes)
        horizon = min(env.ended_at or now, now) - timedelta(seconds=30)
        window = max(int((horizon - env.approved_at).total_seconds() * 0.95), 6)
        drifted = 0
        for n in range(activity_per_envelope if key == "triage" else 20):
            at = min(env.approved_at + timedelta(seconds=rng.randint(5, window)), now - timedelta(seconds=1))
            scope = rng.choice(uses)
            resource = rng.choice(env.resources).replace("*", rng.choice(["api", "web", "billing"]))
            denied = rng.random() < 0.04
            drift = denied and rng.random() < 0.4 and (drift_cap is None or drifted < drift_cap)
            drifted += drift
            activity.append(
                ActivityEvent(
                    kind=ActivityEvent.Kind.DECISION if n % 3 else ActivityEvent.Kind.TOOL_CALL,
                    agent_id=env.agent_id,
                    instance_id=env.instance_id,
                    envelope_id=env.id,
                    scope="github:admin" if drift else scope,
                    resource=resource,
                    allow=not denied,
                    reason="scope_not_granted" if drift else ("budget_exhausted" if denied else "ok"),
                    drift=drift,
                    occurred_at=at,
                    recorded_at=at,
                )
            )
        if drifted:
            last = max(event.occurred_at for event in activity if event.envelope_id == env.id and event.drift)
            TaskEnvelope.objects.filter(pk=env.pk).update(drift_count=drifted, last_drift_at=last)
        # One gardener envelope re-mints a credential for nearly every call: far more than 20 actions need.
        mint = 90 if key == "prune" and env.approved_at > now - timedelta(days=3) else max(2, env.actions_used // 10)
        for m in range(mint):
            issued = min(env.approved_at + timedelta(minutes=5 * m % max(int(env.duration_seconds / 60), 5)), horizon)
            ttl = timedelta(minutes=rng.choice([5, 5, 5, 10, 15])) if key != "sync" else timedelta(minutes=60)
            creds.append(
                Credential(
                    jti=uuid.uuid4().hex,
                    instance_id=env.instance_id,
                    envelope_id=env.id,
                    scopes=list(env.scopes),
                    audience="mandate",
                    issued_at=issued,
                    expires_at=min(issued + ttl, max(horizon, issued + timedelta(seconds=1))),
                    status=Credential.Status.EXPIRED,
                    kid="demo",
                )
            )
    ActivityEvent.objects.bulk_create(activity, batch_size=2000)
    Credential.objects.bulk_create(creds, batch_size=2000)

    # Stale and never-seen instances, and a clone that outlived its parent.
    stale = identity_services.register_instance(
        agent=agents["expense-review"], actor=owner, public_jwk=_key(), label="stale-worker"
    )
    Instance.objects.filter(pk=stale.pk).update(
        stale=True, stale_since=now - timedelta(hours=3), last_seen_at=now - timedelta(hours=4)
    )
    never = identity_services.register_instance(
        agent=agents["repo-gardener"], actor=owner, public_jwk=_key(), label="never-started"
    )
    Instance.objects.filter(pk=never.pk).update(created_at=now - timedelta(days=5))
    parent = identity_services.register_instance(
        agent=agents["nightly-sync"], actor=owner, public_jwk=_key(), label="parent"
    )
    clone = identity_services.clone_instance(parent=parent, actor=owner, public_jwk=_key(), label="clone")
    Instance.objects.filter(pk=clone.pk).update(last_seen_at=now - timedelta(hours=1))
    lifecycle.retire_instance(instance=parent, actor=owner, reason="replaced")

    # Standing exceptions: approved, pending, due for re-certification, and one past its hard expiry.
    crm = exception_services.request_standing_exception(
        actor=owner,
        agent=agents["expense-review"],
        vendor="Acme CRM webhook",
        scopes=["jira:read"],
        justification="The CRM only supports a static bearer token for its webhook.",
        compensating_controls="Source IP allow-list; token scoped to one project; weekly log review.",
        duration_days=90,
        recertify_every_days=30,
        issue_secret=True,
    ).standing_exception
    exception_services.approve_standing_exception(standing_exception=crm, actor=admin)
    exception_services.request_standing_exception(
        actor=owner,
        vendor="Legacy SFTP drop",
        scopes=["github:read"],
        justification="Supplier cannot do OAuth yet.",
        compensating_controls="Read-only; rotated monthly by hand.",
        duration_days=30,
    )
    due = exception_services.request_standing_exception(
        actor=owner,
        vendor="Payroll export",
        scopes=["jira:read"],
        justification="Quarterly export job.",
        compensating_controls="Runs from one host.",
        duration_days=60,
        recertify_every_days=5,
    ).standing_exception
    exception_services.approve_standing_exception(standing_exception=due, actor=admin2, now=now - timedelta(days=8))
    old = exception_services.request_standing_exception(
        actor=owner,
        vendor="Old analytics beacon",
        scopes=["github:read"],
        justification="Vendor sunset pending.",
        compensating_controls="Monitored.",
        duration_days=3,
    ).standing_exception
    exception_services.approve_standing_exception(standing_exception=old, actor=admin, now=now - timedelta(days=4))

    # The leaver: deactivated; the sweeps flag and pause the agent and expire the old exception.
    leaver.is_active = False
    leaver.save(update_fields=["is_active"])
    from posture.selectors import flag_orphaned_agents

    orphaned = flag_orphaned_agents()
    expired = exception_services.expire_due_standing_exceptions()
    summary = {
        "envelopes": len(envelopes),
        "activity": len(activity),
        "credentials": len(creds),
        "orphaned": orphaned,
        "expired_exceptions": expired,
    }
    if stdout is not None:
        stdout.write(f"posture demo: {summary}\n")
    return summary
