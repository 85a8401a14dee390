"""mandate-mcp-gateway end to end, with real processes: Mandate (the live test server, reached through a
TCP proxy the test can cut), the gateway as its own process, the sample MCP server (built with the
`mcp` SDK) as its stdio upstream, and a real MCP client with a credential minted by Mandate."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from django.test import override_settings
from mandate_sdk import Credentials
from mcp import ClientSession, McpError
from mcp.client.streamable_http import streamable_http_client

from accounts.services import create_api_token, set_gateway_audiences
from tasks.lifecycle import revoke_envelope
from tasks.models import ActivityEvent, TaskEnvelope
from tests.helpers.factories import make_agent, make_envelope, make_instance
from tests.helpers.oauth import approve

pytestmark = pytest.mark.django_db(transaction=True)

SDK = Path(__file__).resolve().parents[2] / "clients" / "python"
SAMPLE = SDK / "examples" / "sample_mcp_server.py"


class TcpProxy:
    """Forwards 127.0.0.1:<port> to the live server until cut: then every connection is refused."""

    def __init__(self, target: tuple[str, int]):
        self.target, self.up, self.open = target, True, []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            self.open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self):
        self.up = False
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (close alone does not)
        self.listener.close()
        for sock in self.open:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return probe.getsockname()[1]


@pytest.fixture
def mandate(live_server, settings):
    """Mandate as the gateway and agent see it: the live server behind a proxy, and its public URL."""
    host, port = live_server.thread.host, live_server.thread.port
    proxy = TcpProxy((host, port))
    settings.MANDATE_PUBLIC_URL = proxy.url  # the credentials' iss, the discovery document's URLs
    settings.DEBUG = True  # the gateway's resource URL is plain http on loopback, as in development
    yield proxy
    proxy.cut()


@pytest.fixture
def gateway_token(gateway):
    return create_api_token(user=gateway, actor=gateway, name="mcp").secret


def write_config(tmp_path, mandate, port, *, unmapped=False, hide_unmapped=False, upstream_url=None) -> Path:
    tools = {
        "list_issues": ("github:read", "repo:{owner}/{repo}"),
        "create_issue": ("github:write", "repo:{owner}/{repo}"),
        "delete_repo": ("github:admin", "repo:{owner}/{repo}"),
    }
    if unmapped:
        del tools["delete_repo"]
    rules = "".join(
        f'\n[tools.{name}]\nscope = "{scope}"\nresource = "{resource}"\n' for name, (scope, resource) in tools.items()
    )
    upstream = (
        f'url = "{upstream_url}"'
        if upstream_url
        else f'command = ["{sys.executable}", "{SAMPLE}"]\nenv = {{ SAMPLE_MCP_LOG = "{tmp_path / "upstream.log"}" }}'
    )
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""
[mandate]
url = "{mandate.url}"

[gateway]
listen = "127.0.0.1:{port}"
resource = "http://127.0.0.1:{port}/mcp"
hide_unmapped = {"true" if hide_unmapped else "false"}

[upstream]
{upstream}
{rules}"""
    )
    return path


def start_gateway(config: Path, token: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SDK), "MANDATE_GATEWAY_TOKEN": token}
    return subprocess.Popen(
        [sys.executable, "-m", "mandate_sdk.mcp_gateway", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_until_serving(process: subprocess.Popen, url: str) -> None:
    for _ in range(300):
        if process.poll() is not None:
            raise AssertionError(f"the gateway exited: {process.stdout.read()}")
        try:
            if httpx.get(url + "/.well-known/oauth-protected-resource", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("the gateway did not start")


@pytest.fixture
def port(gateway):
    """The gateway's port; the gateway's API token serves its resource URL as an audience (decisions
    for credentials minted for anything else are denied audience_mismatch). Plain http on a loopback
    address is accepted in development only."""
    port = free_port()
    with override_settings(DEBUG=True):
        set_gateway_audiences(user=gateway, audiences=[f"http://127.0.0.1:{port}/mcp"], actor=gateway)
    return port


@pytest.fixture
def running(tmp_path, mandate, gateway_token, port):
    process = start_gateway(write_config(tmp_path, mandate, port), gateway_token)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(process, base)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture
def agent(owner, admin, mandate, port):
    instance = make_instance(make_agent(owner))
    # Approved for this MCP server's resource (and another service's, to show the gateway refusing it).
    with override_settings(DEBUG=True):
        envelope = make_envelope(
            instance,
            scopes=("github:write",),
            resources=("repo:acme/*",),
            max_actions=5,
            audiences=[f"http://127.0.0.1:{port}/mcp", "https://tools.example.test"],
        )
    return instance, approve(envelope, admin)


def credential(mandate, agent, audience: str) -> str:
    instance, envelope = agent
    return Credentials(
        mandate.url,
        spiffe_id=instance.spiffe_id,
        key=instance.private_key,
        envelope=str(envelope.id),
        resource=audience,
    ).token()


async def with_session(url: str, token: str, work):
    async with (
        httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http,
        streamable_http_client(f"{url}/mcp", http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        return await work(session)


def upstream_calls(tmp_path) -> list[dict]:
    log = tmp_path / "upstream.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def refusal(url, token, tool, arguments) -> McpError:
    async def work(session):
        with pytest.raises(McpError) as refused:
            await session.call_tool(tool, arguments)
        return refused.value

    return asyncio.run(with_session(url, token, work))


def test_the_envelope_decides_what_an_agent_sees_and_may_call(running, mandate, agent, gateway, tmp_path):
    token = credential(mandate, agent, f"{running}/mcp")

    async def work(session):
        listed = await session.list_tools()
        result = await session.call_tool("create_issue", {"owner": "acme", "repo": "api", "title": "Label invoices"})
        return [tool.name for tool in listed.tools], result

    names, result = asyncio.run(with_session(running, token, work))

    assert names == ["create_issue"]  # list_issues (github:read) and delete_repo (github:admin) are hidden
    assert not result.isError and "opened 'Label invoices' in acme/api" in result.content[0].text
    assert upstream_calls(tmp_path) == [
        {"tool": "create_issue", "owner": "acme", "repo": "api", "title": "Label invoices"}
    ]
    assert TaskEnvelope.objects.get().actions_used == 1  # one evaluation, one action of the budget

    outside = refusal(running, token, "delete_repo", {"owner": "acme", "repo": "api"})
    assert "scope_not_granted" in outside.error.message and outside.error.data["reason"] == "scope_not_granted"
    elsewhere = refusal(running, token, "create_issue", {"owner": "other", "repo": "x", "title": "t"})
    assert elsewhere.error.data["reason"] == "resource_not_granted"
    assert [call["tool"] for call in upstream_calls(tmp_path)] == ["create_issue"]  # the upstream saw neither

    for _ in range(100):  # the gateway reports in the background
        reported = ActivityEvent.objects.filter(kind="tool_call", reported_by=gateway.username).first()
        if reported:
            break
        time.sleep(0.1)
    assert reported.outcome == "ok" and reported.resource == "repo:acme/api" and reported.scope == "github:write"
    assert reported.details["mcp_tool"] == "create_issue" and "duration_ms" in reported.details


def test_a_revoked_envelope_refuses_the_next_call(running, mandate, agent, admin, tmp_path):
    token = credential(mandate, agent, f"{running}/mcp")
    asyncio.run(
        with_session(
            running, token, lambda s: s.call_tool("create_issue", {"owner": "acme", "repo": "a", "title": "t"})
        )
    )

    revoke_envelope(envelope=TaskEnvelope.objects.get(), actor=admin, reason="done")
    refused = refusal(running, token, "create_issue", {"owner": "acme", "repo": "b", "title": "t"})

    assert refused.error.data["reason"] in {"token_revoked", "envelope_inactive"}
    assert [call["repo"] for call in upstream_calls(tmp_path)] == ["a"]


def test_without_a_credential_for_this_gateway_the_answer_is_401_with_the_metadata(running, mandate, agent):
    metadata = httpx.get(f"{running}/.well-known/oauth-protected-resource").json()
    assert metadata["resource"] == f"{running}/mcp" and metadata["authorization_servers"] == [mandate.url]

    bare = httpx.post(f"{running}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert bare.status_code == 401
    assert (
        bare.headers["WWW-Authenticate"] == f'Bearer resource_metadata="{running}/.well-known/oauth-protected-resource"'
    )

    for_elsewhere = credential(mandate, agent, "https://tools.example.test")
    wrong = httpx.post(
        f"{running}/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"Authorization": f"Bearer {for_elsewhere}", "Accept": "application/json, text/event-stream"},
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_token"
    assert "audience" in wrong.json()["error_description"]


def test_mandate_unreachable_refuses_calls_instead_of_forwarding_them(running, mandate, agent, tmp_path):
    token = credential(mandate, agent, f"{running}/mcp")
    asyncio.run(with_session(running, token, lambda s: s.list_tools()))  # the gateway has Mandate's keys now

    mandate.cut()
    refused = refusal(running, token, "create_issue", {"owner": "acme", "repo": "api", "title": "t"})

    assert refused.error.data["reason"] == "mandate_unavailable"
    assert upstream_calls(tmp_path) == []


def test_the_gateway_refuses_to_start_with_an_unmapped_upstream_tool_unless_told_to_hide_it(
    tmp_path, mandate, gateway_token
):
    port = free_port()
    process = start_gateway(write_config(tmp_path, mandate, port, unmapped=True), gateway_token)
    output, _ = process.communicate(timeout=60)
    assert process.returncode != 0 and "delete_repo" in output and "hide_unmapped" in output

    hidden = start_gateway(write_config(tmp_path, mandate, port, unmapped=True, hide_unmapped=True), gateway_token)
    try:
        wait_until_serving(hidden, f"http://127.0.0.1:{port}")
    finally:
        hidden.terminate()
        hidden.wait(timeout=20)


def test_a_streamable_http_upstream_is_proxied_the_same_way(tmp_path, mandate, gateway_token, agent, port):
    upstream_port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(SAMPLE), "--http", str(upstream_port)],
        env={**os.environ, "SAMPLE_MCP_LOG": str(tmp_path / "upstream.log")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    gateway = None
    try:
        for _ in range(300):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", upstream_port), timeout=1):
                break
            time.sleep(0.1)
        config = write_config(tmp_path, mandate, port, upstream_url=f"http://127.0.0.1:{upstream_port}/mcp")
        gateway = start_gateway(config, gateway_token)
        wait_until_serving(gateway, f"http://127.0.0.1:{port}")
        token = credential(mandate, agent, f"http://127.0.0.1:{port}/mcp")

        result = asyncio.run(
            with_session(
                f"http://127.0.0.1:{port}",
                token,
                lambda s: s.call_tool("create_issue", {"owner": "acme", "repo": "api", "title": "over http"}),
            )
        )
        refused = refusal(f"http://127.0.0.1:{port}", token, "delete_repo", {"owner": "acme", "repo": "api"})
    finally:
        for process in (gateway, upstream):
            if process is not None:
                process.terminate()
                process.wait(timeout=20)

    assert not result.isError and "over http" in result.content[0].text
    assert refused.error.data["reason"] == "scope_not_granted"
    assert [call["tool"] for call in upstream_calls(tmp_path)] == ["create_issue"]


def test_reported_arguments_keep_their_shape_but_not_their_secrets():
    from mandate_sdk.mcp_gateway import scrub

    reported = scrub({"owner": "acme", "author": "ada", "apiKey": "k-1", "nested": {"Password": "p", "n": [1]}})

    assert reported == {
        "owner": "acme",
        "author": "ada",
        "apiKey": "[scrubbed]",
        "nested": {"Password": "[scrubbed]", "n": [1]},
    }
