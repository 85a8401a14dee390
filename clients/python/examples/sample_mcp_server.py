"""A sample MCP server with three GitHub-like tools, to put behind mandate-mcp-gateway: stdio, or
streamable HTTP on 127.0.0.1:PORT/mcp with ``--http PORT``.

It does nothing real: each tool answers what it would have done. With SAMPLE_MCP_LOG set, each call
it receives is appended to that file as one JSON line (what the gateway's tests read to prove that a
refused call never reached it).
"""

from __future__ import annotations

import json
import os
import sys

from mcp.server.fastmcp import FastMCP

server = FastMCP("sample-github")


def _seen(tool: str, **arguments: str) -> None:
    log = os.environ.get("SAMPLE_MCP_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as file:
            file.write(json.dumps({"tool": tool, **arguments}) + "\n")


@server.tool()
def list_issues(owner: str, repo: str) -> str:
    """List the open issues of a repository."""
    _seen("list_issues", owner=owner, repo=repo)
    return f"{owner}/{repo} has no open issues"


@server.tool()
def create_issue(owner: str, repo: str, title: str) -> str:
    """Open an issue in a repository."""
    _seen("create_issue", owner=owner, repo=repo, title=title)
    return f"opened '{title}' in {owner}/{repo}"


@server.tool()
def delete_repo(owner: str, repo: str) -> str:
    """Delete a repository."""
    _seen("delete_repo", owner=owner, repo=repo)
    return f"deleted {owner}/{repo}"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--http"]:  # --http PORT: streamable HTTP on 127.0.0.1:PORT/mcp instead of stdio
        server.settings.port = int(sys.argv[2])
        server.run("streamable-http")
    else:
        server.run()  # stdio
