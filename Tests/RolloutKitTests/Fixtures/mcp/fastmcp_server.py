"""A tiny MCP stdio server on the official Python SDK (PyPI `mcp` 2.3.0), for MCPTests.

mcp 2.x renamed FastMCP to MCPServer: `mcp.server.fastmcp` is still importable in name only,
and raises an error pointing at `mcp.server.mcpserver`.
"""

from typing import TypedDict

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError

server = MCPServer("rollout-test")


@server.tool()
def whoami(ctx: Context) -> str:
    """Report the session id this call carried in params._meta (empty when none)."""
    meta = ctx.request_context.meta or {}
    return str(meta.get("sessionId") or "")


class Sum(TypedDict):
    a: int
    b: int
    total: int


@server.tool()
def add(a: int, b: int) -> Sum:
    """Add two integers; the answer comes back as structured content too."""
    return {"a": a, "b": b, "total": a + b}


@server.tool()
def explode(reason: str) -> str:
    """Fail as a tool: an isError result carrying the reason."""
    raise ToolError(f"exploded: {reason}")


@server.tool()
def refuse(reason: str) -> str:
    """Fail as a protocol error: a JSON-RPC error with code -32001."""
    raise MCPError(-32001, f"refused: {reason}")


if __name__ == "__main__":
    # A banner on stdout before the protocol starts, as some real servers print.
    print("rollout-test fixture server starting", flush=True)
    server.run()
