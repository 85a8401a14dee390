"""Every allowed and every forbidden transition of the Agent, Instance and TaskEnvelope state
machines, table-driven against the transition functions, plus a property-based walk through random
sequences of agent and instance verbs checked against a reference model."""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.models import AuditEvent
from audit.services import verify_chain
from core.errors import InvalidTransition
from identities.models import Agent, Instance
from tasks import lifecycle
from tasks import services as env
from tasks.models import TaskEnvelope
from tests.helpers.factories import make_agent, make_envelope, make_instance

pytestmark = pytest.mark.django_db

REFUSED = "409"  # InvalidTransition
UNCHANGED = "unchanged"  # the function reports it changed nothing (sweeps)

# --- Agent ----------------------------------------------------------------------------------------

AGENT_TABLE = {
    ("pause", "active"): "paused",
    ("pause", "paused"): "paused",  # already there: a no-op, not an error
    ("pause", "retired"): REFUSED,
    ("resume", "paused"): "active",
    ("resume", "active"): "active",
    ("resume", "retired"): REFUSED,
    ("retire", "active"): "retired",
    ("retire", "paused"): "retired",
    ("retire", "retired"): "retired",
}
AGENT_VERBS = {"pause": lifecycle.pause_agent, "resume": lifecycle.resume_agent, "retire": lifecycle.retire_agent}


def test_the_agent_table_covers_every_verb_from_every_state():
    assert set(AGENT_TABLE) == set(itertools.product(AGENT_VERBS, Agent.Status.values))


@pytest.mark.parametrize(("verb", "from_state"), list(AGENT_TABLE))
def test_agent_transition(owner, verb, from_state):
    agent = make_agent(owner)
    Agent.objects.filter(pk=agent.pk).update(status=from_state)
    expected = AGENT_TABLE[(verb, from_state)]
    audit_rows = AuditEvent.objects.count()
    if expected == REFUSED:
        with pytest.raises(InvalidTransition):
            AGENT_VERBS[verb](agent=agent, actor=owner)
        assert AuditEvent.objects.count() == audit_rows
        expected = from_state
    else:
        AGENT_VERBS[verb](agent=agent, actor=owner)
        changed = expected != from_state
        assert AuditEvent.objects.count() == audit_rows + (1 if changed else 0)
    agent.refresh_from_db()
    assert agent.status == expected


# --- Instance -------------------------------------------------------------------------------------

INSTANCE_TABLE = {
    ("pause", "active"): "paused",
    ("pause", "paused"): "paused",
    ("pause", "retired"): REFUSED,
    ("resume", "paused"): "active",
    ("resume", "active"): "active",
    ("resume", "retired"): REFUSED,
    ("retire", "active"): "retired",
    ("retire", "paused"): "retired",
    ("retire", "retired"): "retired",
}
INSTANCE_VERBS = {
    "pause": lifecycle.pause_instance,
    "resume": lifecycle.resume_instance,
    "retire": lifecycle.retire_instance,
}


def test_the_instance_table_covers_every_verb_from_every_state():
    assert set(INSTANCE_TABLE) == set(itertools.product(INSTANCE_VERBS, Instance.Status.values))


@pytest.mark.parametrize(("verb", "from_state"), list(INSTANCE_TABLE))
def test_instance_transition(owner, verb, from_state):
    instance = make_instance(make_agent(owner))
    Instance.objects.filter(pk=instance.pk).update(status=from_state)
    expected = INSTANCE_TABLE[(verb, from_state)]
    audit_rows = AuditEvent.objects.count()
    if expected == REFUSED:
        with pytest.raises(InvalidTransition):
            INSTANCE_VERBS[verb](instance=instance, actor=owner)
        assert AuditEvent.objects.count() == audit_rows
        expected = from_state
    else:
        INSTANCE_VERBS[verb](instance=instance, actor=owner)
    instance.refresh_from_db()
    assert instance.status == expected


@pytest.mark.parametrize("agent_state", ["paused", "retired"])
def test_an_instance_cannot_resume_while_its_agent_is_not_active(owner, agent_state):
    agent = make_agent(owner)
    instance = make_instance(agent)
    Instance.objects.filter(pk=instance.pk).update(status="paused")
    Agent.objects.filter(pk=agent.pk).update(status=agent_state)
    with pytest.raises(InvalidTransition):
        lifecycle.resume_instance(instance=instance, actor=owner)


def test_resuming_an_agent_resumes_only_the_instances_paused_with_it(owner):
    agent = make_agent(owner)
    on_its_own, with_agent = make_instance(agent, label="a"), make_instance(agent, label="b")
    lifecycle.pause_instance(instance=on_its_own, actor=owner)
    lifecycle.pause_agent(agent=agent, actor=owner)
    lifecycle.resume_agent(agent=agent, actor=owner)
    assert Instance.objects.get(pk=on_its_own.pk).status == "paused"
    assert Instance.objects.get(pk=with_agent.pk).status == "active"


def test_retiring_an_agent_retires_every_instance(owner):
    agent = make_agent(owner)
    a, b = make_instance(agent, label="a"), make_instance(agent, label="b")
    lifecycle.pause_instance(instance=b, actor=owner)
    lifecycle.retire_agent(agent=agent, actor=owner)
    assert set(Instance.objects.filter(pk__in=[a.pk, b.pk]).values_list("status", flat=True)) == {"retired"}


# --- TaskEnvelope ---------------------------------------------------------------------------------

S = TaskEnvelope.State
ENVELOPE_TABLE = {
    "approve": {S.PENDING: S.APPROVED},
    "deny": {S.PENDING: S.DENIED},
    "revoke": {S.APPROVED: S.REVOKED, S.ACTIVE: S.REVOKED, S.REVOKED: S.REVOKED},
    "complete": {S.APPROVED: S.COMPLETED, S.ACTIVE: S.COMPLETED, S.COMPLETED: S.COMPLETED},
    "retask": {S.APPROVED: S.SUPERSEDED, S.ACTIVE: S.SUPERSEDED},
    # the sweep: a live envelope past its end, or a pending one nobody decided in time
    "expire": {S.PENDING: S.EXPIRED, S.APPROVED: S.EXPIRED, S.ACTIVE: S.EXPIRED},
    # the first credential minted under an approved envelope
    "activate": {S.APPROVED: S.ACTIVE},
}
# Sweeps and conditional updates report "nothing to do" instead of refusing.
QUIET_VERBS = {"expire", "activate"}


def _force_state(envelope: TaskEnvelope, state: str) -> None:
    fields = {"state": state}
    if state in (S.APPROVED, S.ACTIVE):
        now = timezone.now()
        fields.update(approved_at=now, expires_at=now + timedelta(seconds=envelope.duration_seconds))
    if state in TaskEnvelope.TERMINAL_STATES:
        fields["ended_at"] = timezone.now()
    TaskEnvelope.objects.filter(pk=envelope.pk).update(**fields)


def _do(verb: str, envelope: TaskEnvelope, *, owner, admin):
    far_future = timezone.now() + timedelta(days=30)
    if verb == "approve":
        return env.approve_envelope(envelope=envelope, actor=admin)
    if verb == "deny":
        return env.deny_envelope(envelope=envelope, actor=admin, comment="no")
    if verb == "revoke":
        return lifecycle.revoke_envelope(envelope=envelope, actor=owner, reason="test")
    if verb == "complete":
        return lifecycle.complete_envelope(envelope=envelope, actor=owner)
    if verb == "retask":
        return lifecycle.retask_envelope(
            envelope=envelope,
            actor=owner,
            intent="narrower",
            scopes=["github:read"],
            resources=[],
            duration_seconds=600,
            max_actions=5,
        )
    if verb == "expire":
        return lifecycle.expire_envelope(envelope_id=envelope.pk, now=far_future)
    if verb == "activate":
        from django.db import transaction

        with transaction.atomic():
            return lifecycle.activate_on_first_credential(envelope=envelope, actor=owner)
    raise AssertionError(verb)


ENVELOPE_CASES = [(verb, state) for verb in ENVELOPE_TABLE for state in S.values]


@pytest.mark.parametrize(("verb", "from_state"), ENVELOPE_CASES)
def test_envelope_transition(owner, admin, verb, from_state):
    envelope = make_envelope(make_instance(make_agent(owner)))
    _force_state(envelope, from_state)
    envelope.refresh_from_db()
    expected = ENVELOPE_TABLE[verb].get(from_state)
    audit_rows = AuditEvent.objects.count()
    if expected is None and verb not in QUIET_VERBS:
        with pytest.raises(InvalidTransition):
            _do(verb, envelope, owner=owner, admin=admin)
        assert AuditEvent.objects.count() == audit_rows
        expected = from_state
    elif expected is None:
        assert not _do(verb, envelope, owner=owner, admin=admin)
        assert AuditEvent.objects.count() == audit_rows
        expected = from_state
    else:
        _do(verb, envelope, owner=owner, admin=admin)
    envelope.refresh_from_db()
    assert envelope.state == expected
    if expected in TaskEnvelope.TERMINAL_STATES:
        assert envelope.ended_at is not None
    if verb == "retask" and from_state in TaskEnvelope.LIVE_STATES:
        assert envelope.superseded_by.state == S.PENDING


def test_a_pending_envelope_is_not_expired_before_the_policy_says_so(owner):
    envelope = make_envelope(make_instance(make_agent(owner)))
    assert lifecycle.expire_envelope(envelope_id=envelope.pk) is False
    assert TaskEnvelope.objects.get(pk=envelope.pk).state == S.PENDING


def test_a_live_envelope_is_not_expired_before_its_time(owner, admin):
    envelope = make_envelope(make_instance(make_agent(owner)))
    env.approve_envelope(envelope=envelope, actor=admin)
    assert lifecycle.expire_envelope(envelope_id=envelope.pk) is False
    assert TaskEnvelope.objects.get(pk=envelope.pk).state == S.APPROVED


# --- property: random walks through agent and instance verbs --------------------------------------

AGENT_STEP = st.tuples(st.just("agent"), st.sampled_from(["pause", "resume", "retire"]), st.just(0))
INSTANCE_STEP = st.tuples(
    st.just("instance"), st.sampled_from(["pause", "resume", "retire"]), st.integers(min_value=0, max_value=1)
)


class Model:
    """The agent and instance lifecycle written out independently, in plain Python."""

    def __init__(self):
        self.agent = "active"
        self.instances = ["active", "active"]
        self.with_agent = [False, False]

    def apply(self, target: str, verb: str, n: int) -> bool:
        """Return False when the real system must refuse with InvalidTransition."""
        if target == "agent":
            if verb == "pause":
                if self.agent == "retired":
                    return False
                if self.agent == "active":
                    self.agent = "paused"
                    for i, s in enumerate(self.instances):
                        if s == "active":
                            self.instances[i], self.with_agent[i] = "paused", True
            elif verb == "resume":
                if self.agent == "retired":
                    return False
                if self.agent == "paused":
                    self.agent = "active"
                    for i, s in enumerate(self.instances):
                        if s == "paused" and self.with_agent[i]:
                            self.instances[i], self.with_agent[i] = "active", False
            else:
                self.agent = "retired"
                self.instances = ["retired" if s != "retired" else s for s in self.instances]
            return True
        state = self.instances[n]
        if verb == "pause":
            if state == "retired":
                return False
            if state == "active":
                self.instances[n], self.with_agent[n] = "paused", False
        elif verb == "resume":
            if state == "retired" or (state == "paused" and self.agent != "active"):
                return False
            if state == "paused":
                self.instances[n], self.with_agent[n] = "active", False
        else:
            self.instances[n] = "retired"
        return True


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.one_of(AGENT_STEP, INSTANCE_STEP), min_size=1, max_size=12))
def test_random_walks_match_the_lifecycle_model_and_keep_the_chain_intact(owner, steps):
    agent = make_agent(owner, slug=f"walk-{uuid.uuid4().hex[:12]}")
    instances = [make_instance(agent, label="a"), make_instance(agent, label="b")]
    model = Model()
    for target, verb, n in steps:
        allowed = model.apply(target, verb, n)
        try:
            if target == "agent":
                AGENT_VERBS[verb](agent=agent, actor=owner)
            else:
                INSTANCE_VERBS[verb](instance=instances[n], actor=owner)
            refused = False
        except InvalidTransition:
            refused = True
        assert refused == (not allowed), (target, verb, n)
        assert Agent.objects.get(pk=agent.pk).status == model.agent
        assert [Instance.objects.get(pk=i.pk).status for i in instances] == model.instances
    assert verify_chain().ok
