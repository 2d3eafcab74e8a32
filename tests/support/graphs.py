"""Graphs and registries the tests share."""

from __future__ import annotations

from pathlib import Path

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from chamberlain.agents import GraphSpec, ModelRegistry, ScriptedChatModel, Tier, load_graph
from tests.support import toolbox

GRAPHS = Path(__file__).parent.parent / "graphs"


def graph(name: str) -> GraphSpec:
    return load_graph(GRAPHS / f"{name}.yaml", tools=toolbox.tools())


def chat_models() -> tuple[ModelRegistry, ScriptedChatModel]:
    model = ScriptedChatModel(replies=["Your order A1 is on its way.", "Asked about A1; told it ships."])
    registry = toolbox.models()
    registry.register("chat", model, Tier.PRIVATE)
    return registry, model


def conversation() -> list[BaseMessage]:
    """A history whose AIMessage carries tool calls: the case that loses types when careless."""
    return [
        HumanMessage("Where is A1?"),
        AIMessage("", tool_calls=[{"name": "erp.order", "args": {"order_id": "A1"}, "id": "call-1"}]),
        ToolMessage('{"status": "shipped"}', tool_call_id="call-1"),
    ]


def expected_second_call_types() -> list[type[BaseMessage]]:
    return [HumanMessage, AIMessage, ToolMessage, AIMessage, HumanMessage]
