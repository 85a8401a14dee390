"""An agent calling MCP tools through mandate-mcp-gateway with a credential the SDK mints.

    python clients/python/examples/mcp_client.py --mandate http://127.0.0.1:8000 \
        --gateway http://127.0.0.1:8765/mcp --spiffe-id <SPIFFE ID> --key <PEM> --envelope <id> \
        TOOL '{"argument": "value"}' [TOOL '{...}' ...]

Prints the tools the gateway shows this agent, then each call's result or refusal. Exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import httpx
from mandate_sdk import AsyncCredentials, CredentialAuth, load_key
from mcp import ClientSession, McpError
from mcp.client.streamable_http import streamable_http_client


async def run(args: argparse.Namespace) -> None:
    credentials = AsyncCredentials(
        args.mandate,
        spiffe_id=args.spiffe_id,
        key=load_key(args.key),
        envelope=args.envelope,
        resource=args.gateway,  # RFC 8707: a credential for this MCP server and no other
    )
    async with (
        httpx.AsyncClient(auth=CredentialAuth(credentials), timeout=30) as http,
        streamable_http_client(args.gateway, http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        listed = await session.list_tools()
        print("tools:", ", ".join(tool.name for tool in listed.tools) or "(none)")
        calls = args.calls
        for tool, arguments in zip(calls[::2], calls[1::2], strict=True):
            try:
                result = await session.call_tool(tool, json.loads(arguments))
            except McpError as refused:
                print(f"{tool}: refused: {refused.error.message}")
            else:
                print(f"{tool}: {' '.join(getattr(c, 'text', '') for c in result.content)}")
    await credentials.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mandate", required=True)
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--spiffe-id", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--envelope", required=True)
    parser.add_argument("calls", nargs="*", help="TOOL ARGUMENTS-JSON pairs")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
