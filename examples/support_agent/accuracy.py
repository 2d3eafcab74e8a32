"""How often the embedded model chooses the right tool: python -m chamberlain.examples.support_agent.accuracy

Twelve one-turn decisions of the support agent, each a conversation so far and the tool (and
order) a careful agent would choose next. Each is sent as the agent node sends it — the
choice constrained to ``{"tool": ..., "arguments": ...}`` by JSON schema, arguments validated
against the tool's input model, one repair turn — to the embedded SmolLM2-135M. Prints the
figure docs/models.md reports; nothing here is tuned to the task set.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from chamberlain.agents import (
    EmbeddedModelServer,
    ModelCall,
    ModelRegistry,
    OutputField,
    PrivateChatModel,
    StepContext,
    Tier,
    call_model,
)
from chamberlain.examples.support_agent.app import tools

TOOLS = ["support.order", "support.policy", "support.propose_return"]
OUTPUT = {"decision": OutputField(enum=["propose_return", "decline", "answered"]), "reply": OutputField()}
SYSTEM = (
    "You are a support agent for a shop. Look orders up with support.order, check returns with "
    "support.policy, and propose a return with support.propose_return only when the policy allows it. "
    "Use the tools (support.order, support.policy, support.propose_return) as you need them; "
    "when you are done, call final_answer."
)


@dataclass(frozen=True)
class Task:
    messages: list[BaseMessage]
    tool: str
    order_id: str | None


def after(ask: str, order_id: str, returnable: bool) -> list[BaseMessage]:
    call = {"id": "c1", "name": "support.policy", "args": {"order_id": order_id}, "type": "tool_call"}
    answer = {"order_id": order_id, "returnable": returnable, "reason": "within" if returnable else "past the window"}
    return [
        HumanMessage(ask),
        AIMessage("", tool_calls=[call]),
        ToolMessage(json.dumps(answer), tool_call_id="c1", name="support.policy"),
    ]


TASKS = [
    Task([HumanMessage("Where is my order A1001?")], "support.order", "A1001"),
    Task([HumanMessage("What did I pay for order A1002?")], "support.order", "A1002"),
    Task([HumanMessage("Please look up order A1003 for me.")], "support.order", "A1003"),
    Task([HumanMessage("Can I return order A1004?")], "support.policy", "A1004"),
    Task([HumanMessage("Is order A1001 returnable under your policy?")], "support.policy", "A1001"),
    Task([HumanMessage("我想退货，订单 A1002 可以退吗？")], "support.policy", "A1002"),
    Task(after("I want to return A1001, it does not fit.", "A1001", True), "support.propose_return", "A1001"),
    Task(after("Return A1002 please, they broke.", "A1002", True), "support.propose_return", "A1002"),
    Task(after("退掉 A1004 的外套", "A1004", True), "support.propose_return", "A1004"),
    Task(after("I want to return A1003.", "A1003", False), "final_answer", None),
    Task(after("Can you take back A1004?", "A1004", False), "final_answer", None),
    Task(after("Return order A1002.", "A1002", False), "final_answer", None),
]


async def measure(base_url: str) -> dict[str, int]:
    models = ModelRegistry()
    client = PrivateChatModel(
        base_url=base_url, model="smollm2-135m", max_tokens=96, timeout=180, structured_output="json_object"
    )
    models.register("smollm2-135m", client, Tier.EDGE, trust=["pii"], tool_calling="schema")
    registry, counts = tools(), {"tasks": len(TASKS), "valid": 0, "right": 0, "repaired": 0}
    for i, task in enumerate(TASKS, start=1):
        step = StepContext(run_id="accuracy", node="support", visit=1, within=(i,))
        call = ModelCall(step=step, messages=[SystemMessage(SYSTEM), *task.messages], output=OUTPUT, tools=TOOLS)
        reply = await call_model(models, call, tools=registry)
        chosen = reply.tool_calls[0].tool if reply.tool_calls else ("final_answer" if reply.error is None else None)
        order = reply.tool_calls[0].args.get("order_id") if reply.tool_calls else None
        right = chosen == task.tool and (task.order_id is None or order == task.order_id)
        counts["valid"] += reply.error is None
        counts["right"] += right
        counts["repaired"] += reply.repaired
        got = chosen or f"invalid: {str(reply.error)[:60]}"
        print(f"{i:2} want {task.tool:24} got {got} {order or ''}", flush=True)
    return counts


def main() -> None:
    server = EmbeddedModelServer().start()
    try:
        counts = asyncio.run(measure(server.base_url))
    finally:
        server.stop()
    print(json.dumps(counts))
    sys.exit(0)


if __name__ == "__main__":
    main()
