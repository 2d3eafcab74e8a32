"""LangChain tools in, adapters out, and an MCP server's tools imported over stdio."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from langchain_core.tools import StructuredTool, tool

from chamberlain.tools import Effect, ToolContext, ToolInputInvalid, ToolRegistry, ToolRejected
from chamberlain.tools._bridges import McpDeclaration, McpServer, from_langchain, mcp_tools, to_langchain
from tests.support import toolbox

ROOT = Path(__file__).parents[2]
CTX = ToolContext(step_id="r/n/1", idempotency_key="r/n/1")


@tool
def exchange_rate(currency: str) -> str:
    """The CNY exchange rate of a currency."""
    return {"HKD": "0.93", "USD": "7.10"}[currency]


async def test_a_langchain_tool_becomes_an_adapter_with_declared_facts() -> None:
    adapter = from_langchain(exchange_rate, action="finance.rate.read", labels={"text": ("financial",)})
    assert (adapter.name, adapter.action, adapter.effect, adapter.labels) == (
        "exchange_rate",
        "finance.rate.read",
        Effect.READ,
        {"text": ("financial",)},
    )
    assert (await adapter.invoke({"currency": "HKD"}, CTX))["text"] == "0.93"
    with pytest.raises(ToolInputInvalid, match="exchange_rate: currency: Field required"):
        await adapter.invoke({}, CTX)
    assert "exchange_rate" in ToolRegistry([adapter])


async def test_an_adapter_becomes_a_langchain_tool() -> None:
    lc = to_langchain(toolbox.get_order)
    assert isinstance(lc, StructuredTool) and lc.name == "erp_order" and "order_id" in lc.args
    assert await lc.ainvoke({"order_id": "A1"}) == {"order_id": "A1", "total": 120.5}


def server() -> McpServer:
    return McpServer(sys.executable, ["-m", "tests.support.mcp_server"], env={"PYTHONPATH": str(ROOT)})


async def test_declared_mcp_tools_are_imported_and_called_over_stdio() -> None:
    declared = {
        "stock_level": McpDeclaration(action="wms.stock.read"),
        "send_sms": McpDeclaration(action="sms.send", effect=Effect.IRREVERSIBLE, labels={"text": ("pii",)}),
    }
    imported = {a.name: a for a in await mcp_tools(server(), declared)}
    assert set(imported) == {"mcp.stock_level", "mcp.send_sms"}
    assert imported["mcp.send_sms"].effect is Effect.IRREVERSIBLE and imported["mcp.send_sms"].action == "sms.send"
    stock = await imported["mcp.stock_level"].invoke({"sku": "APP-001"}, CTX)
    assert stock["data"] == {"sku": "APP-001", "warehouse": "SH1", "on_hand": 42}
    with pytest.raises(ToolInputInvalid, match=r"mcp\.stock_level: sku: 5 is not of type 'string'"):
        await imported["mcp.stock_level"].invoke({"sku": 5}, CTX)
    with pytest.raises(ToolRejected, match=r"mcp\.stock_level"):
        await imported["mcp.stock_level"].invoke({"sku": "NOPE"}, CTX)


async def test_only_declared_mcp_tools_are_imported() -> None:
    only_stock = await mcp_tools(server(), {"stock_level": McpDeclaration(action="wms.stock.read")})
    assert [a.name for a in only_stock] == ["mcp.stock_level"]  # send_sms has no declaration: not importable
    with pytest.raises(ValueError, match="has no tool"):
        await mcp_tools(server(), {"delete_everything": McpDeclaration(action="x")})
