"""The agent node in the in-process engine: a scripted model chooses tools, every call through the
real permission gate (Cedar, audit log, tickets). The durable twin is tests/workflows/test_agent_node.py."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool as lc_tool
from pydantic import BaseModel

from chamberlain.agents import GraphSpec, ModelRegistry, ScriptedChatModel, Tier
from chamberlain.agents._builder import Graph
from chamberlain.agents._exceptions import BudgetExceeded, GraphSpecError, StepLimitExceeded
from chamberlain.agents._loader import check_graph
from chamberlain.agents._plan import StepOutcome
from chamberlain.agents._safety import review_graph
from chamberlain.agents._steps import ApprovalAnswer, ApprovalRequest, Principal
from chamberlain.tools import ToolRegistry
from chamberlain.tools._bridges import from_langchain
from chamberlain.workflows import AuditLog, Gate, PolicyEngine
from chamberlain.workflows._local import run_gated_in_process
from tests.support import toolbox
from tests.support.workers import TEST_SECRET

POLICY = """
@id("reads") permit (principal, action == Action::"erp.order.read", resource);
@id("models") permit (principal, action == Action::"model.invoke", resource);
@id("small-refunds") permit (principal, action == Action::"erp.refund.create", resource)
when { context.amount_cny <= 50 };
@id("approved-refunds") @approvers("manager")
permit (principal, action == Action::"erp.refund.create", resource)
when { context.approved && context.approver_roles.contains("manager") };
"""
CUSTOMER = Principal(id="helpdesk", kind="service", roles=["helpdesk"])
MANAGER = Principal(id="mei", roles=["manager"])
GRANT = ["erp.order.read", "erp.refund.create", "tool.test.count"]


def agent_graph(tools: Sequence[str] = ("erp.order", "erp.refund", "test.count"), **agent: Any) -> GraphSpec:
    return GraphSpec.model_validate(
        {
            "name": "agent-test",
            "grant": GRANT,
            "state": {"request": {}, "summary": {}},
            "start": "agent",
            "nodes": {
                "agent": {
                    "type": "agent",
                    "instructions": "You handle returns.",
                    "prompt": "{request}",
                    "tools": list(tools),
                    "output": {"summary": {}},
                    "model": "agent",
                    "next": "done",
                    **agent,
                },
                "done": {"type": "end"},
            },
        }
    )


def call(tool: str, id: str = "c1", **args: Any) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": tool, "args": args, "id": id}])


def final(summary: str) -> AIMessage:
    return call("final_answer", "end", summary=summary)


def results(messages: Sequence[BaseMessage]) -> list[str]:
    return [m.text for m in messages if isinstance(m, ToolMessage)]


def gate(tmp_path: Path) -> tuple[Gate, AuditLog]:
    audit = AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    return Gate(PolicyEngine([POLICY]), audit, toolbox.tools(), TEST_SECRET), audit


def registry(model: ScriptedChatModel) -> ModelRegistry:
    models = ModelRegistry()
    models.register("agent", model, Tier.PRIVATE)
    return models


async def run(
    tmp_path: Path, model: ScriptedChatModel, spec: GraphSpec | None = None, approve: Any = None
) -> tuple[Any, list[StepOutcome], AuditLog]:
    the_gate, audit = gate(tmp_path)
    trace: list[StepOutcome] = []
    outcome = await run_gated_in_process(
        spec or agent_graph(),
        {"request": "Return order A1, please"},
        gate=the_gate,
        models=registry(model),
        principal=CUSTOMER,
        approve=approve,
        trace=trace,
    )
    return outcome, trace, audit


async def test_a_denied_call_goes_back_to_the_model_which_recovers(tmp_path: Path) -> None:
    def respond(messages: Sequence[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        done = results(messages)
        if not done:
            return call("test.count", n=1)  # no policy permits it
        if len(done) == 1:
            assert done[0].startswith("refused (PermissionDenied)")
            return call("erp.order", "c2", order_id="A1")
        return final(f"order total {json.loads(done[-1])['total']}")

    model = ScriptedChatModel(respond=respond)
    outcome, trace, audit = await run(tmp_path, model)
    assert outcome.status == "completed" and outcome.output["summary"] == f"order total {toolbox.ORDER_TOTAL}"
    assert toolbox.effects("count") == []  # the denied call never ran
    assert [e for e, _ in toolbox.effects()] == ["order"]
    [tools_offered] = {tuple(t["function"]["name"] for t in kw["tools"]) for _, kw in model.calls}
    assert tools_offered == ("erp.order", "erp.refund", "test.count", "final_answer")
    step = trace[0]
    assert any("test.count refused" in line for line in step.routing)
    run_id = toolbox.effects("order")[0][1].split("/")[0]
    assert toolbox.effects("order") == [("order", f"{run_id}/agent/1/2/1")]  # node/visit/turn/call
    denied = [(r.step_id, r.action) for r in audit.records() if r.decision == "deny"]
    assert denied == [(f"{run_id}/agent/1/1/1", "tool.test.count")]


async def test_an_approver_edits_the_arguments_and_the_edited_call_runs_once(tmp_path: Path) -> None:
    asked: list[ApprovalRequest] = []

    def respond(messages: Sequence[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        done = results(messages)
        return final(done[0]) if done else call("erp.refund", order_id="A1", amount=100.0)

    def approve(request: ApprovalRequest) -> ApprovalAnswer:
        asked.append(request)
        return ApprovalAnswer(
            step_id=request.step.step_id,
            outcome="approve",
            approver=MANAGER,
            values={"args": {"order_id": "A1", "amount": 40.0}},
        )

    model = ScriptedChatModel(respond=respond)
    outcome, trace, _ = await run(tmp_path, model, approve=approve)
    [request] = asked
    assert "erp.refund" in request.ask and '"amount": 100.0' in request.ask  # the approver sees what was asked
    assert len(toolbox.effects("refund")) == 1  # the edited call, once; the original never
    assert json.loads(outcome.output["summary"])["amount"] == 40.0
    last_call = model.calls[-1][0]
    ai = [m for m in last_call if isinstance(m, AIMessage) and m.tool_calls]
    assert ai[-1].tool_calls[0]["args"]["amount"] == 40.0  # the model sees the call that ran
    assert any("edited by the approver" in line for line in trace[0].routing)


async def test_an_approver_rejects_with_a_message_the_model_reads(tmp_path: Path) -> None:
    def respond(messages: Sequence[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        done = results(messages)
        if not done:
            return call("erp.refund", order_id="A1", amount=100.0)
        return final("no refund: " + done[0])

    def reject(request: ApprovalRequest) -> ApprovalAnswer:
        return ApprovalAnswer(step_id=request.step.step_id, outcome="reject", reason="退款需要收据", approver=MANAGER)

    outcome, _, _ = await run(tmp_path, ScriptedChatModel(respond=respond), approve=reject)
    assert toolbox.effects("refund") == []
    assert "not approved (mei: 退款需要收据)" in outcome.output["summary"]


async def test_the_turn_bound_ends_the_run_with_a_named_reason(tmp_path: Path) -> None:
    model = ScriptedChatModel(respond=lambda messages, kwargs: call("erp.order", order_id=f"A{len(messages)}"))
    with pytest.raises(StepLimitExceeded, match="max_turns=3"):
        await run(tmp_path, model, agent_graph(bounds={"max_turns": 3}))
    assert len(toolbox.effects("order")) == 3


async def test_the_token_bound_ends_the_run_with_a_named_reason(tmp_path: Path) -> None:
    model = ScriptedChatModel(respond=lambda messages, kwargs: call("erp.order", order_id=f"A{len(messages)}"))
    with pytest.raises(BudgetExceeded, match=r"bounds\.max_tokens=30"):
        await run(tmp_path, model, agent_graph(bounds={"max_tokens": 30}))


async def test_a_call_outside_the_toolset_is_a_repair_turn_not_a_call(tmp_path: Path) -> None:
    def respond(messages: Sequence[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        if isinstance(messages[-1], HumanMessage) and "invalid" in messages[-1].text:
            return final("fixed")
        return call("erp.refund", order_id="A1", amount=1.0)  # not in this agent's toolset

    outcome, trace, _ = await run(tmp_path, ScriptedChatModel(respond=respond), agent_graph(tools=["erp.order"]))
    assert outcome.output["summary"] == "fixed" and toolbox.effects("refund") == []
    assert "ok after repair" in trace[0].routing[0]


def test_a_toolset_outside_the_grant_is_refused_at_load() -> None:
    spec = agent_graph().model_copy(update={"grant": ["erp.order.read"]})
    with pytest.raises(GraphSpecError, match="outside the graph's grant"):
        check_graph(spec, tools=toolbox.tools())


def test_an_agent_that_can_reach_an_irreversible_tool_without_an_approval_policy_is_refused() -> None:
    tools = toolbox.tools()  # test.refund_then_stall is irreversible (action erp.refund.create)
    spec = agent_graph(tools=["erp.order", "test.refund_then_stall"])
    with pytest.raises(GraphSpecError, match=r"agent 'agent' may call irreversible tool 'test\.refund_then_stall'"):
        check_graph(spec, tools=tools, review=lambda s: review_graph(s, tools))
    bounded = PolicyEngine.load().bounded  # the shipped refunds policy asks for approval or limits the amount
    assert check_graph(spec, tools=tools, review=lambda s: review_graph(s, tools, bounded=bounded)) is spec


def test_the_review_covers_agents_inside_child_graphs() -> None:
    tools = toolbox.tools()
    child = agent_graph(tools=["test.refund_then_stall"]).model_dump(by_alias=True, exclude_none=True)
    spec = GraphSpec.model_validate(
        {
            "name": "outer",
            "grant": GRANT,
            "state": {"request": {}, "summary": {}},
            "start": "sub",
            "graphs": {"inner": child},
            "nodes": {"sub": {"type": "subgraph", "graph": "inner", "next": "done"}, "done": {"type": "end"}},
        }
    )
    with pytest.raises(GraphSpecError, match=r"graphs\.inner\.nodes\.agent\.tools\.0"):
        check_graph(spec, tools=tools, review=lambda s: review_graph(s, tools))


class Lookup(BaseModel):
    order_id: str = ""
    total: float = 0.0


class Batch(BaseModel):
    orders: list[Any] = []
    totals: list[Any] = []


async def test_builder_subgraph_and_map_run_in_process_behind_the_same_gate(tmp_path: Path) -> None:
    """The in-process engine runs child graphs nested, each through a gate holding it to the parent's grant."""
    look = (
        Graph("look", state=Lookup, grant=["erp.order.read"])
        .tool("get", tool="erp.order", args={"order_id": "order_id"}, output={"total": "result.total"}, next="done")
        .end("done")
        .build(tools=toolbox.tools())
    )
    batch = (
        Graph("batch", state=Batch, grant=["erp.order.read"])
        .map("each", over="orders", graph=look, input={"order_id": "item"}, write="totals", concurrency=2, next="done")
        .end("done")
        .build(tools=toolbox.tools())
    )
    the_gate, _ = gate(tmp_path)
    outcome = await run_gated_in_process(
        batch, {"orders": ["A1", "Б2", "订3"]}, gate=the_gate, models=ModelRegistry(), principal=CUSTOMER
    )
    assert [t["output"]["order_id"] for t in outcome.output["totals"]] == ["A1", "Б2", "订3"]
    steps = sorted(step for _, step in toolbox.effects("order"))
    assert len(steps) == 3 and all(s.split("/", 1)[1].startswith("each/1/") for s in steps)
    refund_child = look.model_copy(update={"grant": ["erp.order.read", "erp.refund.create"]})
    with pytest.raises(GraphSpecError, match="outside the parent's grant"):
        Graph("bad", state=Batch, grant=["erp.order.read"]).map(
            "each", over="orders", graph=refund_child, write="totals", next="done"
        ).end("done").build(tools=toolbox.tools())


async def test_a_model_without_tool_calling_chooses_by_schema_and_the_cascade_takes_over_when_it_fails(
    tmp_path: Path,
) -> None:
    """The small model gets the choice as constrained JSON and the conversation as plain turns; its
    invalid choice gets one repair turn, then the turn goes to the larger model (native tools)."""

    def small(messages: Sequence[BaseMessage], kwargs: dict[str, Any]) -> str:
        assert "tools" not in kwargs and not any(isinstance(m, ToolMessage) for m in messages)
        if any(isinstance(m, HumanMessage) and m.text.startswith("Result of erp.order") for m in messages):
            return json.dumps({"tool": "erp.order", "arguments": {"order_id": "A1"}})  # the same call again
        return json.dumps({"tool": "erp.order", "arguments": {"order_id": "A1"}})

    def big(messages: Sequence[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        return final("done after " + str(len(results(messages))) + " result(s)")

    small_model, big_model = ScriptedChatModel(respond=small), ScriptedChatModel(respond=big)
    models = ModelRegistry()
    models.register("small", small_model, Tier.EDGE, tool_calling="schema")
    models.register("big", big_model, Tier.PRIVATE)
    the_gate, _ = gate(tmp_path)
    trace: list[StepOutcome] = []
    outcome = await run_gated_in_process(
        agent_graph(model=None, cascade=["small", "big"]),
        {"request": "A1?"},
        gate=the_gate,
        models=models,
        principal=CUSTOMER,
        trace=trace,
    )
    assert outcome.output["summary"] == "done after 1 result(s)"
    choice = small_model.calls[0][1]["response_format"]["json_schema"]["schema"]
    assert [c["properties"]["tool"]["const"] for c in choice["anyOf"]] == [
        "erp.order",
        "erp.refund",
        "test.count",
        "final_answer",
    ]
    routing = trace[0].routing
    assert routing[0] == "turn 1: small: ok" and routing[2].startswith("turn 2: small: invalid output")
    assert "already called with these arguments" in routing[2] and routing[3] == "turn 2: big: ok"
    assert len(small_model.calls) == 3  # turn 1, turn 2 and its repair
    assert len(toolbox.effects("order")) == 1


async def test_a_langchain_tool_in_a_toolset_is_gated_and_its_labels_reach_only_a_trusted_model(
    tmp_path: Path,
) -> None:
    """A LangChain tool (through the bridge) under the same gate; its result is labelled financial,
    so the next turn skips the model not trusted with it and the cascade's trusted one answers."""

    @lc_tool
    def exchange_rate(currency: str) -> str:
        """The CNY exchange rate of a currency."""
        return {"HKD": "0.93", "USD": "7.10"}[currency]

    rate = from_langchain(exchange_rate, action="finance.rate.read", labels={"text": ("financial",)})
    tools = ToolRegistry([*toolbox.tools().values(), rate])

    def respond(messages: Sequence[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        done = results(messages)
        return final(done[0]) if done else call("exchange_rate", currency="HKD")

    edge, private = ScriptedChatModel(respond=respond), ScriptedChatModel(respond=respond)
    models = ModelRegistry()
    models.register("edge", edge, Tier.EDGE)
    models.register("private", private, Tier.PRIVATE, trust=["financial"])
    policy = POLICY + '@id("rates") permit (principal, action == Action::"finance.rate.read", resource);'
    audit = AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    the_gate = Gate(PolicyEngine([policy]), audit, tools, TEST_SECRET)
    spec = agent_graph(tools=["exchange_rate"], model=None, cascade=["edge", "private"])
    spec = spec.model_copy(update={"grant": [*GRANT, "finance.rate.read"]})
    trace: list[StepOutcome] = []
    outcome = await run_gated_in_process(
        spec, {"request": "HKD?"}, gate=the_gate, models=models, principal=CUSTOMER, trace=trace
    )
    assert json.loads(outcome.output["summary"])["text"] == "0.93"
    assert trace[0].routing[0] == "turn 1: edge: ok"
    assert trace[0].routing[2] == "turn 2: edge: skipped, may not receive data labelled financial"
    assert trace[0].routing[3] == "turn 2: private: ok" and len(edge.calls) == 1  # nothing sent to edge
    assert trace[0].labels["summary"] == ["financial"]  # the answer carries what it was made from
    assert [(r.action, r.kind) for r in audit.records() if r.action == "finance.rate.read"] == [
        ("finance.rate.read", "effect")
    ]
