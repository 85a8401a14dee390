"""``mandate-mcp-gateway --config gateway.toml``: an MCP server (streamable HTTP) in front of an
upstream MCP server (a stdio command or a streamable-HTTP URL) that lets a tool call through only
when Mandate allows it.

- The gateway is an OAuth protected resource (RFC 9728): ``/.well-known/oauth-protected-resource``
  names Mandate as the authorization server and the gateway's resource URL. A request without a
  credential Mandate signed for that URL (its ``aud``; verified offline against Mandate's JWKS) is
  answered 401 with ``WWW-Authenticate: Bearer resource_metadata="…"``. The credential is never
  passed on to the upstream.
- ``tools/list`` shows the upstream tools whose mapped scope the agent's credential grants.
- ``tools/call``: one AuthZEN evaluation (action = the tool's scope, resource = its template filled
  from the call's arguments) before forwarding. A denial is an MCP error naming Mandate's reason
  code, and the upstream never sees the call; Mandate unreachable is a refusal too (fail closed).
  An allowed call is forwarded and its outcome and duration reported as activity, with argument
  values under secret-looking names scrubbed.

Needs the ``mcp`` extra: ``pip install './clients/python[mcp]'``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import string
import sys
import time
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import uvicorn
from mcp import ClientSession, McpError, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from mandate_sdk.activity import ActivityReporter
from mandate_sdk.credentials import MandateError
from mandate_sdk.gateway import AsyncGateway
from mandate_sdk.verify import InvalidCredential, JwksVerifier

logger = logging.getLogger("mandate_sdk.mcp_gateway")

# JSON-RPC error codes of the gateway's refusals (implementation-defined server errors).
DENIED = -32001
UNAVAILABLE = -32002
BAD_ARGUMENTS = -32602
_SECRET_NAME = re.compile(
    r"passw(or)?d|passphrase|secret|token|api[-_]?key|private[-_]?key|credential|authorization|cookie|session",
    re.IGNORECASE,
)


class ConfigError(Exception):
    """The configuration file cannot be used; the message says what to change."""


@dataclass(frozen=True)
class ToolRule:
    scope: str
    resource: str  # a template: {name} is the call's argument of that name

    def resource_for(self, arguments: dict[str, Any]) -> str:
        values: dict[str, str] = {}
        for _, name, _, _ in string.Formatter().parse(self.resource):
            if name is None:
                continue
            value = arguments.get(name)
            if not isinstance(value, str | int) or isinstance(value, bool) or str(value) == "":
                raise McpError(types.ErrorData(code=BAD_ARGUMENTS, message=f"argument {name!r} is required"))
            text = str(value)
            if "/" in text or any(ord(c) < 32 for c in text):
                # A value must not reach into another segment of the resource (repo:{owner}/{repo}).
                raise McpError(types.ErrorData(code=BAD_ARGUMENTS, message=f"argument {name!r} may not contain '/'"))
            values[name] = text
        return self.resource.format(**values)


@dataclass
class Config:
    mandate_url: str
    api_token: str
    resource_url: str
    host: str
    port: int
    path: str
    tools: dict[str, ToolRule]
    hide_unmapped: bool = False
    upstream_command: list[str] = field(default_factory=list)
    upstream_env: dict[str, str] | None = None
    upstream_url: str | None = None
    jwks_refetch_interval: float = 30.0

    @classmethod
    def load(cls, path: str, environ: dict[str, str] | None = None) -> Config:
        environ = dict(os.environ if environ is None else environ)
        try:
            with open(path, "rb") as file:
                raw = tomllib.load(file)
        except (OSError, tomllib.TOMLDecodeError) as failed:
            raise ConfigError(f"{path}: {failed}") from None
        mandate, gateway, upstream = raw.get("mandate", {}), raw.get("gateway", {}), raw.get("upstream", {})
        token_env = mandate.get("api_token_env", "MANDATE_GATEWAY_TOKEN")
        api_token = environ.get(token_env, "")
        if not api_token:
            raise ConfigError(f"set {token_env} to the gateway's API token (a user with the gateway role)")
        if "url" not in mandate:
            raise ConfigError("[mandate] url is required (Mandate's URL, e.g. http://127.0.0.1:8000)")
        listen = str(gateway.get("listen", "127.0.0.1:8765"))
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError("[gateway] listen is host:port, e.g. 127.0.0.1:8765")
        resource_url = str(gateway.get("resource", f"http://{listen}/mcp"))
        parts = urlsplit(resource_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
            raise ConfigError(
                "[gateway] resource is the gateway's absolute http(s) URL, e.g. http://127.0.0.1:8765/mcp"
            )
        command, url = upstream.get("command"), upstream.get("url")
        if (command is None) == (url is None):
            raise ConfigError("[upstream] needs command = [...] (a stdio MCP server) or url = '...' (streamable HTTP)")
        if command is not None and (not isinstance(command, list) or not command):
            raise ConfigError("[upstream] command is a list: the program and its arguments")
        tools: dict[str, ToolRule] = {}
        for name, rule in raw.get("tools", {}).items():
            if not isinstance(rule, dict) or not isinstance(rule.get("scope"), str) or "resource" not in rule:
                raise ConfigError(f"[tools.{name!r}] needs scope = 'tool:action' and resource = 'type:{{argument}}'")
            tools[name] = ToolRule(scope=rule["scope"], resource=str(rule["resource"]))
        return cls(
            mandate_url=str(mandate["url"]).rstrip("/"),
            api_token=api_token,
            resource_url=resource_url,
            host=host,
            port=int(port),
            path=parts.path or "/",
            tools=tools,
            hide_unmapped=bool(gateway.get("hide_unmapped", False)),
            upstream_command=[str(part) for part in command] if command else [],
            upstream_env={str(k): str(v) for k, v in upstream["env"].items()} if "env" in upstream else None,
            upstream_url=str(url) if url else None,
            jwks_refetch_interval=float(gateway.get("jwks_refetch_interval", 30.0)),
        )

    @property
    def metadata_url(self) -> str:
        parts = urlsplit(self.resource_url)
        return f"{parts.scheme}://{parts.netloc}/.well-known/oauth-protected-resource"


def scrub(value: Any, depth: int = 0) -> Any:
    """Arguments as reported: values under secret-looking names replaced, long text cut."""
    if depth > 5:
        return "…"
    if isinstance(value, dict):
        return {
            str(k)[:100]: "[scrubbed]" if _SECRET_NAME.search(str(k)) else scrub(v, depth + 1)
            for k, v in list(value.items())[:50]
        }
    if isinstance(value, list):
        return [scrub(v, depth + 1) for v in value[:50]]
    if isinstance(value, str):
        return value[:200]
    return value


class Enforcer:
    """What the MCP handlers ask: who the caller is, what it may see, whether a call may go on."""

    def __init__(self, config: Config, upstream: ClientSession) -> None:
        self.config, self.upstream = config, upstream
        self.verifier = JwksVerifier(
            config.mandate_url, audience=config.resource_url, min_refetch_interval=config.jwks_refetch_interval
        )
        self.mandate = AsyncGateway(config.mandate_url, config.api_token)
        self.reporter = ActivityReporter(config.mandate_url, config.api_token)
        self._tools: dict[str, types.Tool] = {}

    async def load_tools(self) -> None:
        """The upstream's tools; refuses (ConfigError) a tool the configuration does not map,
        unless ``hide_unmapped`` says to leave such tools out."""
        listed = await self.upstream.list_tools()
        unmapped = sorted(tool.name for tool in listed.tools if tool.name not in self.config.tools)
        if unmapped and not self.config.hide_unmapped:
            raise ConfigError(
                "the upstream has tools with no [tools] entry: "
                + ", ".join(unmapped)
                + " (map each to a scope and resource, or set [gateway] hide_unmapped = true)"
            )
        self._tools = {tool.name: tool for tool in listed.tools if tool.name in self.config.tools}

    async def claims(self, token: str) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(self.verifier.verify, token)

    async def visible_tools(self, token: str) -> list[types.Tool]:
        granted = set(str((await self.claims(token)).get("scope", "")).split())
        return [tool for name, tool in self._tools.items() if self.config.tools[name].scope in granted]

    async def call(self, token: str, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        rule = self.config.tools.get(name)
        if rule is None or name not in self._tools:
            raise McpError(types.ErrorData(code=DENIED, message=f"unknown tool {name!r}"))
        resource = rule.resource_for(arguments)
        try:
            decision = await self.mandate.evaluate(token, rule.scope, resource, context={"mcp_tool": name})
        except (httpx.HTTPError, MandateError) as failed:
            logger.warning("refusing %s: Mandate did not answer: %s", name, failed)
            raise McpError(
                types.ErrorData(
                    code=UNAVAILABLE,
                    message="mandate_unavailable: Mandate did not answer; the call was not forwarded",
                    data={"reason": "mandate_unavailable"},
                )
            ) from None
        if not decision.allow:
            raise McpError(
                types.ErrorData(
                    code=DENIED,
                    message=f"{decision.reason}: {decision.detail or 'refused by Mandate'}",
                    data={"reason": decision.reason, "decision_id": decision.decision_id},
                )
            )
        started = time.monotonic()
        outcome = "error"
        try:
            result = await self.upstream.call_tool(name, arguments)
            outcome = "error" if result.isError else "ok"
            return result
        finally:
            self.reporter.report(
                "tool_call",
                scope=rule.scope,
                resource=resource,
                outcome=outcome,
                token=token,
                details={
                    "mcp_tool": name,
                    "duration_ms": round((time.monotonic() - started) * 1000),
                    "arguments": scrub(arguments),
                    "decision_id": decision.decision_id,
                },
            )


def build_server(enforcer_of: Callable[[], Enforcer]) -> Server[Any, Any]:
    server: Server[Any, Any] = Server("mandate-mcp-gateway")

    def bearer() -> str:
        request = server.request_context.request
        header = request.headers.get("authorization", "") if isinstance(request, Request) else ""
        return header[7:] if header[:7].lower() == "bearer " else ""

    async def list_tools(_: Any) -> types.ServerResult:
        tools = await enforcer_of().visible_tools(bearer())
        return types.ServerResult(types.ListToolsResult(tools=tools))

    async def call_tool(request: types.CallToolRequest) -> types.ServerResult:
        result = await enforcer_of().call(bearer(), request.params.name, dict(request.params.arguments or {}))
        return types.ServerResult(result)

    # Registered directly: a refusal must be a JSON-RPC error, not a tool result the model reads.
    server.request_handlers[types.ListToolsRequest] = list_tools
    server.request_handlers[types.CallToolRequest] = call_tool
    return server


class _RequireCredential:
    """ASGI: only requests with a credential Mandate signed for this gateway reach the MCP server."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], state: _State) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        header = request.headers.get("authorization", "")
        token = header[7:] if header[:7].lower() == "bearer " else ""
        challenge = f'Bearer resource_metadata="{self.state.config.metadata_url}"'
        if not token:
            await JSONResponse(
                {"error": "invalid_request", "error_description": "a Bearer credential from Mandate is required"},
                status_code=401,
                headers={"WWW-Authenticate": challenge},
            )(scope, receive, send)
            return
        try:
            await self.state.enforcer.claims(token)
        except InvalidCredential as rejected:
            await JSONResponse(
                {"error": "invalid_token", "error_description": str(rejected)},
                status_code=401,
                headers={"WWW-Authenticate": f'{challenge}, error="invalid_token"'},
            )(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _State:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._enforcer: Enforcer | None = None

    @property
    def enforcer(self) -> Enforcer:
        if self._enforcer is None:
            raise RuntimeError("the gateway is not connected to its upstream yet")
        return self._enforcer


@contextlib.asynccontextmanager
async def _upstream(config: Config) -> AsyncIterator[ClientSession]:
    async with contextlib.AsyncExitStack() as stack:
        if config.upstream_url is not None:
            read, write, _ = await stack.enter_async_context(streamable_http_client(config.upstream_url))
        else:
            params = StdioServerParameters(
                command=config.upstream_command[0], args=config.upstream_command[1:], env=config.upstream_env
            )
            read, write = await stack.enter_async_context(stdio_client(params))
        session = await stack.enter_async_context(ClientSession(read, write))
        await session.initialize()
        yield session


def build_app(config: Config) -> Starlette:
    state = _State(config)
    manager = StreamableHTTPSessionManager(app=build_server(lambda: state.enforcer), stateless=True, json_response=True)

    async def metadata(_: Request) -> Response:
        """RFC 9728 protected-resource metadata."""
        return JSONResponse(
            {
                "resource": config.resource_url,
                "authorization_servers": [config.mandate_url],
                "bearer_methods_supported": ["header"],
                "scopes_supported": sorted({rule.scope for rule in config.tools.values()}),
                "resource_name": "MCP server behind Mandate",
            }
        )

    async def handle_mcp(scope: Scope, receive: Receive, send: Send) -> None:
        await manager.handle_request(scope, receive, send)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with _upstream(config) as upstream, manager.run():
            enforcer = Enforcer(config, upstream)
            await enforcer.load_tools()
            state._enforcer = enforcer
            try:
                yield
            finally:
                enforcer.reporter.close()
                await enforcer.mandate.aclose()

    well_known = "/.well-known/oauth-protected-resource"
    routes = [
        Route(well_known, metadata, methods=["GET"]),
        Route(well_known + config.path.rstrip("/"), metadata, methods=["GET"]),
        Route(config.path, _RequireCredential(handle_mcp, state)),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mandate-mcp-gateway", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="the gateway's TOML file")
    parser.add_argument("--mandate-url", help="Mandate's URL, instead of the file's [mandate] url")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config = Config.load(args.config)
        if args.mandate_url:
            config.mandate_url = args.mandate_url.rstrip("/")
    except ConfigError as wrong:
        print(f"mandate-mcp-gateway: {wrong}", file=sys.stderr)
        return 2
    server = uvicorn.Server(uvicorn.Config(build_app(config), host=config.host, port=config.port, log_level="info"))
    server.run()
    # A lifespan failure (e.g. an unmapped upstream tool) stops the server before it serves.
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
