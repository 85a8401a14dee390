"""The Python SDK (clients/python) against a live Mandate: keys, the CLI, minting with a fresh client
assertion, caching, one mint per refresh across threads, and an httpx.Auth."""

from __future__ import annotations

import json
import os
import stat
import threading
import time

import httpx
import jwt
import pytest
from mandate_sdk import CredentialAuth, Credentials, MandateError, generate_key, load_key, public_jwk
from mandate_sdk.cli import main as cli

from identities import services as identity_services
from identities.models import Credential
from tests.helpers.factories import make_agent, make_envelope
from tests.helpers.oauth import approve

pytestmark = pytest.mark.django_db(transaction=True)


class Clock:
    """A clock the test moves by hand, so refresh is tested without waiting."""

    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("key_type", "kty"), [("ed25519", "OKP"), ("p256", "EC")])
def test_keygen_writes_an_owner_only_pem_and_prints_only_the_public_jwk(tmp_path, capsys, key_type, kty):
    path = tmp_path / "instance-key.pem"

    assert cli(["keygen", str(path), "--type", key_type]) == 0

    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    printed = json.loads(capsys.readouterr().out)
    assert printed == public_jwk(load_key(path)) and printed["kty"] == kty
    assert "d" not in printed


def test_keygen_never_overwrites_a_key(tmp_path, capsys):
    path = tmp_path / "instance-key.pem"
    generate_key(path)
    before = path.read_bytes()

    assert cli(["keygen", str(path)]) == 1

    assert path.read_bytes() == before and "exists" in capsys.readouterr().err


@pytest.fixture
def registered(tmp_path, owner, admin):
    """An instance registered with a key the SDK generated, and its approved envelope."""
    key = generate_key(tmp_path / "instance-key.pem")
    instance = identity_services.register_instance(
        agent=make_agent(owner), actor=owner, public_jwk=public_jwk(key), label="sdk"
    )
    envelope = approve(make_envelope(instance), admin)
    return instance, envelope, tmp_path / "instance-key.pem"


def credentials_for(live_server, registered, **options) -> Credentials:
    instance, envelope, key_path = registered
    return Credentials(
        live_server.url, spiffe_id=instance.spiffe_id, key=load_key(key_path), envelope=str(envelope.id), **options
    )


def test_a_credential_is_minted_once_and_cached_while_fresh(live_server, registered):
    instance, envelope, _ = registered
    credentials = credentials_for(live_server, registered)

    first, second = credentials.token(), credentials.token()

    assert first == second and Credential.objects.count() == 1
    claims = jwt.decode(first, options={"verify_signature": False})
    assert claims["sub"] == instance.spiffe_id and claims["envelope"] == str(envelope.id)


def test_it_refreshes_before_expiry_with_one_mint_across_threads(live_server, registered):
    clock = Clock(time.time())
    credentials = credentials_for(live_server, registered, clock=clock, refresh_margin=30)
    first = credentials.current()
    clock.now = first.expires_at - 29  # inside the margin: stale, though not yet expired

    seen: list[str] = []
    threads = [threading.Thread(target=lambda: seen.append(credentials.token())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(seen)) == 1 and seen[0] != first.access_token
    assert Credential.objects.count() == 2


def test_a_refusal_is_raised_with_its_oauth_error(live_server, registered):
    credentials = credentials_for(live_server, registered, scopes=["github:admin"])

    with pytest.raises(MandateError) as refused:
        credentials.token()

    assert refused.value.error == "invalid_scope" and refused.value.status == 400
    assert Credential.objects.count() == 0


def test_the_httpx_auth_sends_the_current_credential(live_server, registered):
    credentials = credentials_for(live_server, registered)
    seen = {}

    def record(request: httpx.Request) -> httpx.Response:
        seen["authorization"] = request.headers["Authorization"]
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(record)) as tool:
        tool.get("https://tools.example.test/", auth=CredentialAuth(credentials))

    assert seen["authorization"] == f"Bearer {credentials.token()}"


def test_the_token_command_mints_and_prints_the_credential(live_server, registered, capsys):
    instance, envelope, key_path = registered
    argv = ["token", "--url", live_server.url, "--spiffe-id", instance.spiffe_id, "--key", str(key_path)]

    assert cli([*argv, "--envelope", str(envelope.id), "--scope", "github:write"]) == 0

    printed = json.loads(capsys.readouterr().out)
    assert printed["scope"] == "github:write" and printed["envelope"] == str(envelope.id)
    assert (
        Credential.objects.get().jti == jwt.decode(printed["access_token"], options={"verify_signature": False})["jti"]
    )


def test_the_register_command_registers_the_key_with_the_owners_token(
    live_server, owner, tmp_path, capsys, monkeypatch
):
    from accounts.services import create_api_token
    from identities.models import Instance

    agent = make_agent(owner)
    key_path = tmp_path / "instance-key.pem"
    key = generate_key(key_path)
    monkeypatch.setenv("MANDATE_API_TOKEN", create_api_token(user=owner, actor=owner).secret)

    argv = ["register", "--url", live_server.url, "--agent", agent.slug, "--key", str(key_path), "--label", "w1"]
    assert cli(argv) == 0

    printed = json.loads(capsys.readouterr().out)
    instance = Instance.objects.get(pk=printed["id"])
    assert printed["spiffe_id"] == instance.spiffe_id and instance.public_jwk == public_jwk(key)
    assert instance.label == "w1"


def test_the_register_command_wants_the_token_from_the_environment(live_server, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MANDATE_API_TOKEN", raising=False)
    generate_key(tmp_path / "k.pem")

    assert cli(["register", "--url", live_server.url, "--agent", "a", "--key", str(tmp_path / "k.pem")]) == 2
    assert "MANDATE_API_TOKEN" in capsys.readouterr().err


def test_the_token_command_prints_a_refusal_and_fails(live_server, registered, capsys):
    instance, envelope, key_path = registered
    argv = ["token", "--url", live_server.url, "--spiffe-id", instance.spiffe_id, "--key", str(key_path)]

    assert cli([*argv, "--envelope", str(envelope.id), "--scope", "github:admin"]) == 1
    assert "invalid_scope" in capsys.readouterr().err
