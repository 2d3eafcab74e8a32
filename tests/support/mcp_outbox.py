"""An MCP server (stdio) whose tools write each execution to the test's side-effect ledger, keyed
by the idempotency key the bridge sends in the request's ``_meta``: tests count how often a call
really ran, and under which step. Kept free of the project's imports so it starts quickly."""

from __future__ import annotations

import os
import sqlite3

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("outbox")
STOCK = {"APP-001": 42, "ELE-002": 0}
KEY = "chamberlain/idempotency-key"  # tools._bridges.MCP_IDEMPOTENCY_KEY


def record(event: str, ctx: Context) -> None:
    meta = ctx.request_context.meta or {}
    with sqlite3.connect(os.environ["CHAMBERLAIN_TEST_LEDGER"]) as db:
        db.execute("CREATE TABLE IF NOT EXISTS effects (event TEXT, step_id TEXT)")
        db.execute("INSERT INTO effects VALUES (?, ?)", (event, str(meta.get(KEY, ""))))


@server.tool()
def stock_level(sku: str, ctx: Context) -> dict[str, object]:
    """How many units of a SKU the warehouse holds."""
    record("mcp.stock_level", ctx)
    return {"sku": sku, "on_hand": STOCK.get(sku, 0)}


@server.tool()
def send_sms(phone: str, text: str, ctx: Context) -> str:
    """Send a text message to a customer (cannot be taken back)."""
    record("mcp.send_sms", ctx)
    return f"sent {len(text)} characters to {phone[-4:]}"


if __name__ == "__main__":
    server.run("stdio")
