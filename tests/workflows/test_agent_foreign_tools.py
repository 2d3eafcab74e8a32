"""Tools from elsewhere in an agent's toolset, under the same gate: two tools of a real MCP server
(stdio, through the MCP bridge) and two LangChain tools (through the LangChain bridge). A scripted
model calls all four; the policy allows the reads, denies the voucher (the model reads the refusal)
and asks a manager before the SMS, which cannot be taken back. Each call that runs, runs once,
under its own step ID — which reaches the MCP server in ``_meta`` and the LangChain tool in its
run config — and the audit log holds a decision for each call, the approval, and an effect for each call that ran."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool as lc_tool
from temporalio.client import Client, WorkflowHandle

from chamberlain.agents import GraphSpec, ModelRegistry, ScriptedChatModel, Tier
from chamberlain.agents._exceptions import GraphSpecError
from chamberlain.agents._loader import check_graph
from chamberlain.agents._safety import review_graph
from chamberlain.agents._steps import ApprovalRequest
from chamberlain.tools import Effect, ToolRegistry
from chamberlain.tools._bridges import McpDeclaration, McpServer, from_langchain, mcp_tools
from chamberlain.workflows import (
    ApprovalAnswer,
    AuditLog,
    Gate,
    GraphWorkflow,
    PendingApproval,
    PolicyEngine,
    RunResult,
    create_worker,
    decide,
    progress,
    start_run,
)
from chamberlain.workflows._local import run_gated_in_process
from tests.agents.test_agent_node import CUSTOMER, MANAGER, call, final, results
from tests.conftest import run_id
from tests.support import toolbox
from tests.support.workers import TEST_SECRET

ROOT = Path(__file__).parents[2]
POLICY = """
@id("models") permit (principal, action == Action::"model.invoke", resource);
@id("stock") permit (principal, action == Action::"wms.stock.read", resource);
@id("rates") permit (principal, action == Action::"finance.rate.read", resource);
@id("sms") @approvers("manager") permit (principal, action == Action::"sms.send", resource)
when { context.approved && context.approver_roles.contains("manager") };
"""  # nothing permits crm.voucher.create: the voucher is denied
GRANT = ["wms.stock.read", "finance.rate.read", "crm.voucher.create", "sms.send"]
TOOLSET = ["mcp.stock_level", "exchange_rate", "issue_voucher", "mcp.send_sms"]


@lc_tool
def exchange_rate(currency: str, config: RunnableConfig) -> str:
    """The CNY exchange rate of a currency."""
    toolbox.record("exchange_rate", config["metadata"]["idempotency_key"])
    return {"HKD": "0.93", "USD": "7.10"}[currency]


@lc_tool
def issue_voucher(order_id: str, amount: float, config: RunnableConfig) -> str:
    """Give the customer a voucher for an order."""
    toolbox.record("voucher", config["metadata"]["idempotency_key"])
    return f"voucher {order_id} {amount}"


async def foreign_tools() -> ToolRegistry:
    """The test tools, the two LangChain tools, and the declared tools of the MCP server."""
    server = McpServer(
        sys.executable,
        ["-m", "tests.support.mcp_outbox"],
        env={"PYTHONPATH": str(ROOT), "CHAMBERLAIN_TEST_LEDGER": os.environ["CHAMBERLAIN_TEST_LEDGER"]},
    )
    declared = {
        "stock_level": McpDeclaration(action="wms.stock.read"),
        "send_sms": McpDeclaration(action="sms.send", effect=Effect.IRREVERSIBLE),
    }
    langchain = [
        from_langchain(exchange_rate, action="finance.rate.read"),
        from_langchain(issue_voucher, action="crm.voucher.create", effect=Effect.WRITE),
    ]
    return ToolRegistry([*toolbox.tools().values(), *langchain, *await mcp_tools(server, declared)])


def spec() -> GraphSpec:
    return GraphSpec.model_validate(
        {
            "name": "foreign-tools",
            "grant": GRANT,
            "state": {"request": {}, "summary": {}},
            "start": "agent",
            "nodes": {
                "agent": {
                    "type": "agent",
                    "instructions": "You answer a customer about a return.",
                    "prompt": "{request}",
                    "tools": TOOLSET,
                    "output": {"summary": {}},
                    "model": "agent",
                    "next": "done",
                },
                "done": {"type": "end"},
            },
        }
    )


def respond(messages: Sequence[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
    """Turn 1: stock (MCP) and rate (LangChain) at once; 2: a voucher; 3: the SMS; 4: the answer."""
    done = results(messages)
    if not done:
        both = [
            {"name": "mcp.stock_level", "args": {"sku": "APP-001"}, "id": "stock"},
            {"name": "exchange_rate", "args": {"currency": "HKD"}, "id": "rate"},
        ]
        return AIMessage("", tool_calls=both)
    if len(done) == 2:
        return call("issue_voucher", "voucher", order_id="A1", amount=20.0)
    if len(done) == 3:
        return call("mcp.send_sms", "sms", phone="13800001234", text="您的退货已受理")
    return final(" | ".join(done))


def check(output: dict[str, Any], rid: str, audit: AuditLog, model: ScriptedChatModel, durable: bool) -> None:
    """What both engines must show: each call decided, the allowed ones run once, the model told.
    (Only the durable engine audits the approver's answer as a record of its own.)"""
    stock, rate, voucher, sms = output["summary"].split(" | ")
    assert '"on_hand": 42' in stock and '"0.93"' in rate
    assert voucher.startswith("refused (PermissionDenied)") and "sent 7 characters to 1234" in sms
    assert toolbox.effects("mcp.stock_level") == [("mcp.stock_level", f"{rid}/agent/1/1/1")]
    assert toolbox.effects("exchange_rate") == [("exchange_rate", f"{rid}/agent/1/1/2")]
    assert toolbox.effects("voucher") == []  # denied: never ran
    assert toolbox.effects("mcp.send_sms") == [("mcp.send_sms", f"{rid}/agent/1/3/1")]  # once, after approval
    records = [
        (r.step_id.removeprefix(f"{rid}/"), r.action, r.kind, r.decision)
        for r in audit.records()
        if r.run_id == rid and r.action != "model.invoke"
    ]
    assert records == [  # an allowed call that ran is one record: its decision and its effect
        ("agent/1/1/1", "wms.stock.read", "effect", "allow"),
        ("agent/1/1/2", "finance.rate.read", "effect", "allow"),
        ("agent/1/2/1", "crm.voucher.create", "decision", "deny"),
        ("agent/1/3/1", "sms.send", "decision", "needs_approval"),
        *([("agent/1/3/1", "approval", "approval", "approve")] if durable else []),
        ("agent/1/3/1", "sms.send", "effect", "allow"),  # decided again with the approver, then run
    ]
    offered = model.calls[0][1]["tools"]
    described = {t["function"]["name"]: t["function"]["parameters"] for t in offered}
    assert described["mcp.send_sms"]["required"] == ["phone", "text"]  # the MCP server's own schema
    assert list(described["exchange_rate"]["properties"]) == ["currency"]  # not the injected config


def models(model: ScriptedChatModel) -> ModelRegistry:
    registry = ModelRegistry()
    registry.register("agent", model, Tier.PRIVATE)
    return registry


async def test_mcp_and_langchain_tools_in_an_agents_toolset_pass_the_gate_on_the_dev_server(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    tools, model = await foreign_tools(), ScriptedChatModel(respond=respond)
    audit, rid = AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}"), run_id()
    gate = Gate(PolicyEngine([POLICY]), audit, tools, TEST_SECRET)
    worker = create_worker(client, models=models(model), tools=tools, gate=gate, task_queue=task_queue)
    async with worker:
        handle = await start_run(
            client, spec(), {"request": "退货 A1"}, run_id=rid, principal=CUSTOMER, task_queue=task_queue
        )
        pending = await pending_approval(handle)
        assert pending.step_id == f"{rid}/agent/1/3/1" and "mcp.send_sms" in pending.ask and "1234" in pending.ask
        await decide(handle, ApprovalAnswer(step_id=pending.step_id, outcome="approve", approver=MANAGER))
        result = await handle.result()
        scheduled = [
            e.activity_task_scheduled_event_attributes.activity_id
            async for e in handle.fetch_history_events()
            if e.HasField("activity_task_scheduled_event_attributes")
        ]
    assert result.status == "completed"
    check(result.output, rid, audit, model, durable=True)
    # the reads ran as local activities; a write is decided in its own activity: the voucher's
    # (denied: it never ran), the SMS's (it needed approval), then the approved SMS's effect
    calls = [a for a in scheduled if a.count("/") == 3 and not a.endswith("/model")]  # node/visit/turn/call
    assert calls == ["agent/1/2/1", "agent/1/3/1", "agent/1/3/1"]


async def test_mcp_and_langchain_tools_in_an_agents_toolset_pass_the_gate_in_process(tmp_path: Path) -> None:
    tools, model = await foreign_tools(), ScriptedChatModel(respond=respond)
    audit = AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    gate = Gate(PolicyEngine([POLICY]), audit, tools, TEST_SECRET)
    asked: list[ApprovalRequest] = []

    def approve(request: ApprovalRequest) -> ApprovalAnswer:
        asked.append(request)
        return ApprovalAnswer(step_id=request.step.step_id, outcome="approve", approver=MANAGER)

    outcome = await run_gated_in_process(
        spec(), {"request": "退货 A1"}, gate=gate, models=models(model), principal=CUSTOMER, approve=approve
    )
    [request] = asked
    rid = request.step.run_id
    assert outcome.status == "completed" and request.step.local_id == "agent/1/3/1"
    check(outcome.output, rid, audit, model, durable=False)


async def test_an_agent_reaching_an_irreversible_mcp_tool_is_refused_unless_the_policy_bounds_it() -> None:
    tools = await foreign_tools()
    with pytest.raises(GraphSpecError, match=r"agent 'agent' may call irreversible tool 'mcp\.send_sms'"):
        check_graph(spec(), tools=tools, review=lambda s: review_graph(s, tools))
    bounded = PolicyEngine([POLICY]).bounded  # the SMS permit asks for a manager's approval
    assert "sms.send" in bounded
    assert check_graph(spec(), tools=tools, review=lambda s: review_graph(s, tools, bounded=bounded)) == spec()


async def pending_approval(handle: WorkflowHandle[GraphWorkflow, RunResult]) -> PendingApproval:
    """The run's pending approval; each MCP call starts the server anew, so allow a while."""
    for _ in range(1200):
        if found := (await progress(handle)).pending_approval:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{handle.id}: no approval became pending")
