from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from accounts.roles import AGENT_OWNER
from audit.models import AuditEvent
from identities.models import Agent, Credential, Instance
from identities.services import clone_instance
from posture import selectors as posture
from tasks.lifecycle import retire_instance
from tasks.models import TaskEnvelope
from tests.helpers.factories import make_agent, make_instance, new_ed25519_key
from tests.helpers.posture import approved_envelope, credentials, event

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent(owner):
    return make_agent(owner)


@pytest.fixture
def instance(agent):
    return make_instance(agent)


def window():
    return posture.Window.last(30)


def test_granted_vs_used_counts_only_allowed_uses_inside_the_window(instance, admin, owner):
    env = approved_envelope(instance, admin)
    event(env, scope="github:read", resource="repo:acme/api")
    event(env, scope="github:read", resource="repo:acme/web")
    event(env, scope="github:write", resource="repo:acme/api", allow=False)  # denied: not a use
    event(env, scope="jira:read", resource="project:OPS", at=timezone.now() - timedelta(days=40))  # outside

    result = posture.granted_vs_used(owner, window())

    [usage] = result.envelopes
    assert usage.granted_scopes == ["github:read", "github:write", "jira:read"]
    assert usage.used_scopes == ["github:read"]
    assert usage.unused_scopes == ["github:write", "jira:read"]
    assert usage.used_resources == ["repo:acme/*"]
    assert usage.unused_resources == ["project:OPS"]
    assert usage.calls == 2
    assert result.granted_pairs == 3 and result.unused_pairs == 2
    assert result.unused_share == pytest.approx(2 / 3)
    assert usage.suggestion == {"scopes": ["github:read"], "resources": ["repo:acme/*"]}


def test_agent_usage_unions_its_envelopes(agent, instance, admin, owner):
    first = approved_envelope(instance, admin, scopes=("github:read",), resources=("repo:acme/*",))
    second = approved_envelope(
        instance, admin, scopes=("jira:read", "github:write"), resources=("project:OPS",), intent="close stale tickets"
    )
    event(first, scope="github:read", resource="repo:acme/api")
    event(second, scope="jira:read", resource="project:OPS")

    [usage] = posture.granted_vs_used(owner, window()).agents

    assert usage.agent_slug == agent.slug and usage.envelopes == 2
    assert usage.used_scopes == ["github:read", "jira:read"]
    assert usage.unused_scopes == ["github:write"]


def test_a_fully_used_envelope_has_no_suggestion(instance, admin, owner):
    env = approved_envelope(instance, admin, scopes=("github:read",), resources=("repo:acme/*",))
    event(env, scope="github:read", resource="repo:acme/api")

    [usage] = posture.granted_vs_used(owner, window()).envelopes

    assert usage.suggestion is None


def test_owners_see_only_their_own_agents_posture(instance, admin, owner, other_owner, auditor):
    env = approved_envelope(instance, admin)
    event(env, scope="github:read")
    theirs = make_instance(make_agent(other_owner, slug="other-agent"))
    approved_envelope(theirs, admin, scopes=("github:read",))

    assert {u.agent_slug for u in posture.granted_vs_used(owner, window()).agents} == {"invoice-triage"}
    assert {u.agent_slug for u in posture.granted_vs_used(other_owner, window()).agents} == {"other-agent"}
    assert {u.agent_slug for u in posture.granted_vs_used(auditor, window()).agents} == {
        "invoice-triage",
        "other-agent",
    }


# --- standing access -----------------------------------------------------------------------------


def _chain(instance, admin, *, count, gap, intent="nightly sync"):
    start = timezone.now() - timedelta(days=5)
    envs = []
    for i in range(count):
        approved = start + i * (timedelta(minutes=30) + gap)
        envs.append(
            approved_envelope(
                instance,
                admin,
                intent=intent,
                approved_at=approved,
                ended_at=approved + timedelta(minutes=30),
                state=TaskEnvelope.State.EXPIRED,
                scopes=("github:read",),
            )
        )
    return envs


def test_back_to_back_renewals_of_one_intent_are_flagged(instance, admin, owner):
    envs = _chain(instance, admin, count=4, gap=timedelta(minutes=1))

    [chain] = posture.back_to_back_renewals(owner, window())

    assert chain.length == 4 and chain.envelope_ids == [e.id for e in envs]
    assert chain.intent == "nightly sync"


def test_daily_tasks_with_hours_between_them_are_not_renewals(instance, admin, owner):
    _chain(instance, admin, count=4, gap=timedelta(hours=20))

    assert posture.back_to_back_renewals(owner, window()) == []


def test_agents_whose_envelopes_are_always_the_maximum_duration_are_flagged(owner, admin):
    greedy = make_instance(make_agent(owner, slug="greedy", max_envelope_seconds=3600), label="g")
    modest = make_instance(make_agent(owner, slug="modest", max_envelope_seconds=3600), label="m")
    for _ in range(3):
        approved_envelope(greedy, admin, duration_seconds=3600, scopes=("github:read",))
    for seconds in (3600, 600, 900):
        approved_envelope(modest, admin, duration_seconds=seconds, scopes=("github:read",))

    flagged = posture.always_max_duration(owner, window())

    assert [row["slug"] for row in flagged] == ["greedy"]
    assert flagged[0]["envelope_count"] == 3


def test_credentials_minted_far_more_often_than_actions_need_are_flagged(instance, admin, owner):
    noisy = approved_envelope(instance, admin, intent="noisy")
    calm = approved_envelope(instance, admin, intent="calm")
    TaskEnvelope.objects.filter(pk=noisy.pk).update(actions_used=2)
    TaskEnvelope.objects.filter(pk=calm.pk).update(actions_used=20)
    credentials(noisy, 40)
    credentials(calm, 12)

    flagged = posture.over_minted(owner, window())

    assert [row["envelope_id"] for row in flagged] == [noisy.id]
    assert flagged[0]["credentials"] == 40 and flagged[0]["ratio"] == 20.0


# --- stale and orphaned --------------------------------------------------------------------------


def test_deactivating_an_owner_orphans_and_pauses_their_agents(agent, instance, admin, owner):
    approved_envelope(instance, admin)
    credentials(TaskEnvelope.objects.get(), 1, ttl=timedelta(hours=1), at=timezone.now())
    Credential.objects.update(status=Credential.Status.ACTIVE)
    owner.is_active = False
    owner.save()

    first = posture.flag_orphaned_agents()
    again = posture.flag_orphaned_agents()

    agent.refresh_from_db()
    assert agent.orphaned and agent.status == Agent.Status.PAUSED
    assert first == {"flagged": 1, "paused": 1, "cleared": 0}
    assert again == {"flagged": 0, "paused": 0, "cleared": 0}
    assert Credential.objects.get().status == Credential.Status.REVOKED
    orphaned = AuditEvent.objects.get(verb="agent.orphaned")
    assert orphaned.actor == "orphaned-owner" and "deactivated" in orphaned.reason
    assert AuditEvent.objects.filter(verb="agent.paused", actor="orphaned-owner").count() == 1


def test_leaving_the_owner_group_orphans_and_returning_clears_the_flag(agent, owner, auditor):
    group = Group.objects.get(name=AGENT_OWNER)
    owner.groups.remove(group)

    posture.flag_orphaned_agents(pause=False)
    agent.refresh_from_db()
    assert agent.orphaned and agent.status == Agent.Status.ACTIVE
    assert posture.stale_counts(auditor)["orphaned_agents"] == 1

    owner.groups.add(group)
    assert posture.flag_orphaned_agents(pause=False)["cleared"] == 1
    agent.refresh_from_db()
    assert not agent.orphaned
    assert posture.stale_counts(auditor)["orphaned_agents"] == 0


def test_an_agent_with_an_active_owner_is_not_orphaned(agent):
    assert posture.flag_orphaned_agents() == {"flagged": 0, "paused": 0, "cleared": 0}


def test_never_seen_instances_and_clones_that_outlived_their_parent_are_counted(agent, instance, owner):
    Instance.objects.filter(pk=instance.pk).update(created_at=timezone.now() - timedelta(days=3))
    _, jwk = new_ed25519_key()
    clone = clone_instance(parent=instance, actor=owner, public_jwk=jwk)
    Instance.objects.filter(pk=clone.pk).update(last_seen_at=timezone.now())
    retire_instance(instance=instance, actor=owner)

    counts = posture.stale_counts(owner)

    assert counts["outlived_parent"] == 1
    assert counts["never_seen"] == 0  # the never-seen parent is retired; the clone was seen
    fresh = make_instance(agent, label="fresh")
    Instance.objects.filter(pk=fresh.pk).update(created_at=timezone.now() - timedelta(days=2))
    assert posture.stale_counts(owner)["never_seen"] == 1


# --- chart numbers -------------------------------------------------------------------------------


def test_credential_lifetimes_and_short_lived_share(instance, admin, owner):
    env = approved_envelope(instance, admin)
    credentials(env, 3, ttl=timedelta(minutes=5))
    credentials(env, 1, ttl=timedelta(hours=2))

    buckets = dict(posture.credential_lifetimes(owner, window()))

    assert buckets["≤ 5 min"] == 3 and buckets["> 1 h"] == 1 and buckets["≤ 1 min"] == 0
    assert posture.short_lived_share(owner, window()) == (3, 4)
    assert posture.credentials_in_bucket(owner, window(), 4).count() == 1


def test_approval_waits_bucket_people_apart_from_policy_rules(instance, admin, owner):
    approved_envelope(instance, admin)  # created 10 min before approval
    waits = posture.approval_waits(owner, window())
    assert dict(waits["buckets"])["< 1 h"] == 1
    assert posture.envelopes_in_wait_bucket(owner, window(), 1).count() == 1


def test_denials_and_drift_per_day_fill_empty_days(instance, admin, owner):
    env = approved_envelope(instance, admin)
    event(env, scope="github:write", allow=False, drift=True)
    event(env, scope="github:write", allow=False)

    days = posture.denials_and_drift(owner, posture.Window.last(7))

    assert len(days) == 8
    assert sum(d["denied"] for d in days) == 2 and sum(d["drift"] for d in days) == 1
