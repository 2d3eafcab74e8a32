"""A small MCP server (stdio) for the bridge tests: a warehouse stock lookup and an SMS sender."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

server = MCPServer("warehouse")
STOCK = {"APP-001": 42, "ELE-002": 0}


@server.tool()
def stock_level(sku: str, warehouse: str = "SH1") -> dict[str, object]:
    """How many units of a SKU a warehouse holds."""
    if sku not in STOCK:
        raise ValueError(f"unknown sku {sku}")
    return {"sku": sku, "warehouse": warehouse, "on_hand": STOCK[sku]}


@server.tool()
def send_sms(phone: str, text: str) -> str:
    """Send a text message to a customer."""
    return f"sent {len(text)} characters to {phone[-4:]}"


if __name__ == "__main__":
    server.run("stdio")
