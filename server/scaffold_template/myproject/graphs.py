"""The same kind of graph in Python: typed state, one call per node.

``chamberlain graph export myproject.graphs:order_status`` prints it as YAML.
"""

from __future__ import annotations

from typing import Annotated

from chamberlain.agents import Graph, GraphSpec, Labels, When
from chamberlain.tools import ToolRegistry
from pydantic import BaseModel


class StatusState(BaseModel):
    order_id: str
    total: Annotated[float, Labels("financial")] = 0
    refunded: Annotated[float, Labels("financial")] = 0
    reply: str | None = None
    error: str | None = None


def order_status(tools: ToolRegistry | None = None) -> GraphSpec:
    """Look an order up and say what is left to refund on it."""
    g = Graph("order-status", state=StatusState, description="tell a customer where an order stands")
    left = "str(result.total - result.refunded)"
    g.tool(
        "lookup",
        tool="myproject.order",
        args={"order_id": "order_id"},
        output={
            "total": "result.total",
            "refunded": "result.refunded",
            "reply": f"'Order ' + result.order_id + ' has ' + {left} + ' CNY left to refund'",
        },
        on_error="refused",
        error="error",
        next=[When("refunded >= total", "settled"), "open"],
    )
    g.end("settled", output=["order_id", "refunded"])
    g.end("open", output=["order_id", "reply"])
    g.end("refused", output=["order_id", "error"])
    return g.build(tools=tools)
