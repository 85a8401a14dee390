"""The SDK's agent side against a live Mandate: registration (owner API token, workload token), an
envelope request, one mint per refresh across asyncio tasks, delegation, the live-credential cap and
slow_down, and activity reported in batches from a bounded queue that never blocks."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
import types

import httpx
import jwt
import pytest
from django.utils import timezone
from mandate_sdk import (
    ActivityReporter,
    AsyncCredentials,
    BearerToken,
    CredentialAuth,
    Credentials,
    Mandate,
    MandateError,
    generate_key,
    load_key,
    public_jwk,
)

from accounts.services import create_api_token
from identities import oidc
from identities.models import Credential, Instance
from tasks.models import ActivityEvent, TaskEnvelope
from tests.helpers.factories import make_agent, make_envelope
from tests.helpers.oauth import approve
from tests.helpers.oidc import LocalIssuer

pytestmark = pytest.mark.django_db(transaction=True)


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def agent(owner):
    return make_agent(owner)


@pytest.fixture
def owner_token(owner):
    return create_api_token(user=owner, actor=owner, name="sdk").secret


def register(live_server, owner_token, agent, tmp_path, name="worker-1"):
    key = generate_key(tmp_path / f"{name}.pem")
    answer = Mandate(live_server.url, owner_token).register_instance(agent.slug, public_jwk=public_jwk(key), label=name)
    return Instance.objects.get(pk=answer["id"]), key


@pytest.fixture
def registered(live_server, owner_token, agent, tmp_path, admin):
    instance, key = register(live_server, owner_token, agent, tmp_path)
    envelope = approve(make_envelope(instance, may_delegate=True, delegation_depth=1), admin)
    return instance, key, envelope


def credentials(live_server, registered, **options) -> Credentials:
    instance, key, envelope = registered
    return Credentials(live_server.url, spiffe_id=instance.spiffe_id, key=key, envelope=str(envelope.id), **options)


def test_an_owner_registers_an_instance_and_requests_its_envelope(live_server, owner_token, agent, tmp_path, admin):
    instance, key = register(live_server, owner_token, agent, tmp_path)
    mandate = Mandate(live_server.url, owner_token)

    asked = mandate.request_envelope(
        str(instance.id),
        intent="label invoices",
        scopes=["github:write"],
        resources=["repo:acme/*"],
        duration_seconds=600,
        max_actions=5,
    )

    assert instance.public_jwk == public_jwk(key) and instance.label == "worker-1"
    assert asked["state"] == "pending" and asked["instance"] == str(instance.id)
    approve(TaskEnvelope.objects.get(pk=asked["id"]), admin)
    minted = Credentials(live_server.url, spiffe_id=instance.spiffe_id, key=key, envelope=asked["id"]).current()
    assert minted.scope == "github:write"


def test_a_refused_registration_raises_the_field_that_was_wrong(live_server, owner_token, agent):
    with pytest.raises(MandateError) as refused:
        Mandate(live_server.url, owner_token).register_instance(agent.slug, public_jwk={"kty": "RSA"})

    assert refused.value.status == 400 and "public_jwk" in refused.value.description
    assert not Instance.objects.exists()


def test_an_instance_registers_and_mints_with_a_workload_token(live_server, owner_token, agent, admin):
    issuer = LocalIssuer("ES256")
    try:
        oidc.create_issuer(
            actor=admin,
            name="cluster-1",
            issuer=issuer.url,
            audience="mandate",
            rules=[{"agent": agent.slug, "claims": {"sub": "system:serviceaccount:billing:*"}}],
        )
        answer = Mandate(live_server.url, owner_token).register_instance(
            agent.slug, workload_token=issuer.token(), label="pod-a"
        )
        envelope = approve(make_envelope(Instance.objects.get(pk=answer["id"])), admin)

        minted = Credentials(
            live_server.url, spiffe_id=answer["spiffe_id"], workload_token=issuer.token, envelope=str(envelope.id)
        ).current()
    finally:
        issuer.close()

    assert answer["public_jwk"] is None
    assert jwt.decode(minted.access_token, options={"verify_signature": False})["sub"] == answer["spiffe_id"]


def test_asyncio_tasks_refreshing_at_once_share_one_mint(live_server, registered):
    instance, key, envelope = registered
    clock = Clock(time.time())

    async def scenario():
        creds = AsyncCredentials(
            live_server.url, spiffe_id=instance.spiffe_id, key=key, envelope=str(envelope.id), clock=clock
        )
        first = await creds.current()
        clock.now = first.expires_at - 29  # inside the 30 s margin
        tokens = await asyncio.gather(*(creds.token() for _ in range(8)))
        await creds.aclose()
        return first, tokens

    first, tokens = asyncio.run(scenario())

    assert len(set(tokens)) == 1 and tokens[0] != first.access_token
    assert Credential.objects.count() == 2


def test_the_httpx_auth_works_on_an_async_client(live_server, registered):
    instance, key, envelope = registered
    seen = []

    async def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return httpx.Response(200)

    async def scenario():
        creds = AsyncCredentials(live_server.url, spiffe_id=instance.spiffe_id, key=key, envelope=str(envelope.id))
        async with httpx.AsyncClient(transport=httpx.MockTransport(record)) as tool:
            await tool.get("https://tools.example.test/", auth=CredentialAuth(creds))
        return await creds.token()

    token = asyncio.run(scenario())

    assert seen == [f"Bearer {token}"]


def test_delegation_gives_another_instance_a_narrower_credential_naming_the_delegator(
    live_server, registered, owner_token, agent, tmp_path
):
    parent_instance, _, envelope = registered
    child_instance, child_key = register(live_server, owner_token, agent, tmp_path, name="worker-2")
    parent = credentials(live_server, registered)

    child = parent.delegate(spiffe_id=child_instance.spiffe_id, key=child_key, scopes=["github:write"])
    claims = jwt.decode(child.token(), options={"verify_signature": False})

    assert claims["sub"] == child_instance.spiffe_id and claims["envelope"] == str(envelope.id)
    assert claims["act"] == {"sub": parent_instance.spiffe_id}
    delegated = Credential.objects.get(instance=child_instance)
    assert delegated.parent.jti == jwt.decode(parent.token(), options={"verify_signature": False})["jti"]


def test_delegation_the_envelope_does_not_allow_is_refused(live_server, owner_token, agent, tmp_path, admin):
    parent_instance, parent_key = register(live_server, owner_token, agent, tmp_path)
    child_instance, child_key = register(live_server, owner_token, agent, tmp_path, name="worker-2")
    envelope = approve(make_envelope(parent_instance), admin)  # may_delegate is off
    parent = Credentials(
        live_server.url, spiffe_id=parent_instance.spiffe_id, key=parent_key, envelope=str(envelope.id)
    )

    with pytest.raises(MandateError) as refused:
        parent.delegate(spiffe_id=child_instance.spiffe_id, key=child_key).token()

    assert refused.value.error == "invalid_grant" and "delegation" in refused.value.description
    assert not Credential.objects.filter(instance=child_instance).exists()


@pytest.fixture
def one_rate_window(monkeypatch):
    """Rate limits count in fixed windows of wall time: keep this test inside one of them."""
    from core import ratelimit

    frozen = time.time()
    monkeypatch.setattr(ratelimit, "time", types.SimpleNamespace(time=lambda: frozen))


def test_slow_down_keeps_the_cached_credential_and_waits_out_retry_after_when_nothing_is_cached(
    live_server, registered, settings, one_rate_window
):
    settings.MANDATE_RATE_TOKEN_PER_CLIENT = 1
    clock = Clock(time.time())
    creds = credentials(live_server, registered, clock=clock)
    first = creds.current()
    clock.now = first.expires_at - 10  # stale, still alive

    assert creds.token() == first.access_token  # slow_down: the cached one serves
    assert creds.token() == first.access_token  # and no mint is tried before Retry-After
    assert Credential.objects.count() == 1

    waits = []

    def sleep(seconds):
        waits.append(seconds)
        settings.MANDATE_RATE_TOKEN_PER_CLIENT = 100  # as if the minute had passed

    fresh = credentials(live_server, registered, sleep=sleep, max_wait=60)
    assert fresh.token() != first.access_token
    assert len(waits) == 1 and 0 < waits[0] <= 60 and Credential.objects.count() == 2


def test_a_long_retry_after_with_nothing_cached_is_raised_not_waited(
    live_server, registered, settings, one_rate_window
):
    settings.MANDATE_RATE_TOKEN_PER_CLIENT = 1
    credentials(live_server, registered).token()
    waits = []

    with pytest.raises(MandateError) as refused:
        credentials(live_server, registered, max_wait=0, sleep=waits.append).token()

    assert refused.value.error == "slow_down" and refused.value.retry_after and not waits


def test_the_live_credential_cap_keeps_the_cached_credential(live_server, registered, policy_dir):
    policy_dir.replace("lifecycle.toml", "max_live = 10", "max_live = 1")
    clock = Clock(time.time())
    creds = credentials(live_server, registered, clock=clock)
    first = creds.current()
    clock.now = first.expires_at - 10

    assert creds.token() == first.access_token

    with pytest.raises(MandateError) as refused:
        credentials(live_server, registered).token()  # another process, nothing cached
    assert refused.value.at_live_cap and Credential.objects.count() == 1


# --- activity ------------------------------------------------------------------------------------------


class HeldTransport(httpx.HTTPTransport):
    """The real transport, held back until the test lets requests through; counts requests."""

    def __init__(self):
        super().__init__()
        self.open = threading.Event()
        self.requests: list[int] = []

    def handle_request(self, request):
        self.open.wait(timeout=10)
        self.requests.append(len(httpx.Response(200, content=request.read()).json()["events"]))
        return super().handle_request(request)


def test_activity_is_sent_in_batches_and_flushed_on_close(live_server, registered):
    token = credentials(live_server, registered).token()
    transport = HeldTransport()
    reporter = ActivityReporter(
        live_server.url, BearerToken(token), batch_size=3, client=httpx.Client(transport=transport)
    )

    accepted = [reporter.report(scope="github:write", resource="repo:acme/api", outcome="ok") for _ in range(7)]
    transport.open.set()
    reporter.close()

    assert all(accepted) and sum(transport.requests) == 7 and max(transport.requests) <= 3
    assert ActivityEvent.objects.filter(kind="tool_call", outcome="ok").count() == 7
    assert reporter.sent == 7 and reporter.dropped == 0


def test_a_full_queue_drops_instead_of_blocking_and_the_drop_is_reported(live_server, registered):
    token = credentials(live_server, registered).token()
    transport = HeldTransport()
    reporter = ActivityReporter(
        live_server.url, BearerToken(token), max_queue=1, batch_size=1, client=httpx.Client(transport=transport)
    )
    assert reporter.report(outcome="first")
    while reporter._queue.qsize():  # until the sender has taken the first event (and is held)
        time.sleep(0.01)
    assert reporter.report(outcome="second")  # waits in the queue

    assert reporter.report(outcome="third") is False  # full: dropped at once
    transport.open.set()
    reporter.close()

    assert reporter.dropped == 1 and reporter.sent == 2
    second = ActivityEvent.objects.get(outcome="second")
    assert second.details["reporter_dropped"] == 1
    assert not ActivityEvent.objects.filter(outcome="third").exists()


def test_an_event_mandate_rejects_is_dropped_and_the_rest_of_its_batch_is_sent(live_server, registered):
    token = credentials(live_server, registered).token()
    reporter = ActivityReporter(live_server.url, BearerToken(token), batch_size=10)

    reporter.report(outcome="a")
    reporter.report("not-a-kind", outcome="b")
    reporter.report(outcome="c")
    reporter.close()

    assert set(ActivityEvent.objects.values_list("outcome", flat=True)) == {"a", "c"}
    assert reporter.dropped == 1 and reporter.sent == 2


def test_events_still_queued_when_the_process_exits_are_sent(live_server, registered, settings):
    token = credentials(live_server, registered).token()
    script = textwrap.dedent(
        """
        import sys
        from mandate_sdk import ActivityReporter, BearerToken

        reporter = ActivityReporter(sys.argv[1], BearerToken(sys.argv[2]), flush_interval=60)
        for n in range(5):
            reporter.report(scope="github:write", resource="repo:acme/api", outcome=f"exit-{n}")
        # no close(): the interpreter's exit flushes
        """
    )
    subprocess.run(
        [sys.executable, "-c", script, live_server.url, token],
        check=True,
        timeout=60,
        env={"PYTHONPATH": str(settings.BASE_DIR / "clients" / "python"), "PATH": "/usr/bin:/bin"},
    )

    assert ActivityEvent.objects.filter(outcome__startswith="exit-").count() == 5


def test_the_key_file_loads_back(tmp_path):
    key = generate_key(tmp_path / "k.pem", key_type="p256")
    assert public_jwk(load_key(tmp_path / "k.pem")) == public_jwk(key)


def test_a_cloud_session_never_outlives_the_envelope(live_server, registered):
    from mandate_sdk import EnvelopeEndsTooSoon, aws_assume_role_with_web_identity

    _, _, envelope = registered
    minted = credentials(live_server, registered).current()
    left = (envelope.expires_at - timezone.now()).total_seconds()
    assert minted.envelope_ends_at is not None and abs(minted.envelope_ends_at - (time.time() + left)) < 5
    call = aws_assume_role_with_web_identity(minted, role_arn="arn:aws:iam::1:role/agent", session_name="w1")
    assert call["WebIdentityToken"] == minted.access_token
    assert left - 5 <= call["DurationSeconds"] <= left  # what is left of the envelope, not AWS's 1 h default

    late = Clock(minted.envelope_ends_at - 600)  # ten minutes left: below AWS's 15-minute minimum
    with pytest.raises(EnvelopeEndsTooSoon, match="ends in 600 s"):
        aws_assume_role_with_web_identity(minted, role_arn="arn:aws:iam::1:role/agent", session_name="w1", clock=late)
