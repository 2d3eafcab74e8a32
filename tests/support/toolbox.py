"""Tools and models for the tests: real side effects in a SQLite ledger, so tests can
count exactly how many times each step ran."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from pathlib import Path

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from pydantic import BaseModel

from chamberlain.agents import ModelRegistry, ScriptedChatModel, Tier
from chamberlain.tools import Effect, Resource, ToolContext, ToolRegistry, ToolRejected, ToolUnavailable, tool
from chamberlain.tools.erp import contract as erp_contract
from chamberlain.tools.erp.embedded import EmbeddedErp


def ledger_path() -> Path:
    return Path(os.environ.get("CHAMBERLAIN_TEST_LEDGER", "/tmp/chamberlain-test-ledger.sqlite"))


def record(event: str, step_id: str) -> None:
    """Append one side effect; no idempotency here on purpose: the ledger counts executions."""
    with sqlite3.connect(ledger_path()) as db:
        db.execute("CREATE TABLE IF NOT EXISTS effects (event TEXT, step_id TEXT)")
        db.execute("INSERT INTO effects VALUES (?, ?)", (event, step_id))


def effects(event: str | None = None) -> list[tuple[str, str]]:
    with sqlite3.connect(ledger_path()) as db:
        db.execute("CREATE TABLE IF NOT EXISTS effects (event TEXT, step_id TEXT)")
        query = "SELECT event, step_id FROM effects" + (" WHERE event = ?" if event else "")
        return list(db.execute(query, (event,) if event else ()))


ORDER_TOTAL = 120.5


class OrderQuery(BaseModel):
    order_id: str


class Order(BaseModel):
    order_id: str
    total: float


class RefundRequest(BaseModel):
    order_id: str
    amount: float


class Refund(BaseModel):
    refund_id: str
    amount: float


class SlowInput(BaseModel):
    seconds: float = 0.0
    label: str = ""


class SlowOutput(BaseModel):
    label: str


@tool("erp.order", action="erp.order.read")
async def get_order(args: OrderQuery, ctx: ToolContext) -> Order:
    """Look an order up."""
    record("order", ctx.step_id)
    return Order(order_id=args.order_id, total=ORDER_TOTAL)


def refunded_order(args: RefundRequest) -> Resource:
    """What a refund acts on, as the refunds policy needs it: the amount (which the audit log
    records too) and the order's money — every test order is worth ``ORDER_TOTAL``."""
    money = {"currency": "CNY", "total": ORDER_TOTAL, "refunded": 0.0}
    return Resource("Order", args.order_id, {"amount": args.amount, **money})


@tool("erp.refund", effect=Effect.WRITE, action="erp.refund.create", resource=refunded_order)
async def refund(args: RefundRequest, ctx: ToolContext) -> Refund:
    """Refund an order."""
    record("refund", ctx.step_id)
    return Refund(refund_id=f"R-{args.order_id}", amount=args.amount)


@tool("test.slow", effect=Effect.WRITE)
async def slow(args: SlowInput, ctx: ToolContext) -> SlowOutput:
    """Record a start, wait, record a finish: lets a test kill a worker in the middle."""
    record("start", ctx.step_id)
    await asyncio.sleep(args.seconds)
    record("done", ctx.step_id)
    return SlowOutput(label=args.label)


class FlakyInput(BaseModel):
    fail_times: int
    kind: str = "unavailable"


class Count(BaseModel):
    n: int


@tool("test.flaky", effect=Effect.WRITE)
async def flaky(args: FlakyInput, ctx: ToolContext) -> Count:
    """Fail the first ``fail_times`` attempts, as a backend that is down, or refuses."""
    record("flaky", ctx.step_id)
    if ctx.attempt <= args.fail_times:
        raise (ToolRejected if args.kind == "rejected" else ToolUnavailable)(f"attempt {ctx.attempt} fails")
    return Count(n=ctx.attempt)


@tool("test.count")
async def count(args: Count, ctx: ToolContext) -> Count:
    """Add one; a loop of these walks many steps."""
    record("count", ctx.step_id)
    return Count(n=args.n + 1)


class StallingRefund(BaseModel):
    order_id: str
    amount: float
    stall: float = 30.0


async def erp_order(args: StallingRefund) -> Resource:
    """What a refund through the embedded ERP acts on: the order's money, as the ERP has it."""
    order = await EmbeddedErp(os.environ["CHAMBERLAIN_TEST_ERP"]).get_order(args.order_id)
    money = {"currency": order.currency, "total": order.total, "refunded": order.refunded}
    return Resource("Order", args.order_id, {"amount": args.amount, **money})


@tool("test.refund_then_stall", effect=Effect.IRREVERSIBLE, action="erp.refund.create", resource=erp_order)
async def refund_then_stall(args: StallingRefund, ctx: ToolContext) -> erp_contract.RefundView:
    """Refund through the embedded ERP, then — on the first attempt — hang before completing:
    a worker killed now has written the refund but never reported it."""
    erp = EmbeddedErp(os.environ["CHAMBERLAIN_TEST_ERP"])
    view = await erp.refund(erp_contract.RefundRequest(order_id=args.order_id, amount=args.amount), ctx.idempotency_key)
    record("refund-written", ctx.step_id)
    if ctx.attempt == 1:
        await asyncio.sleep(args.stall)
    return view


class PeekInput(BaseModel):
    seconds: float


@tool("test.peek")
async def peek(args: PeekInput, ctx: ToolContext) -> Count:
    """Read — the first call for a step stalls ``seconds``, as a backend that hangs once."""
    first = ("peek", ctx.step_id) not in effects("peek")
    record("peek", ctx.step_id)
    if first:
        await asyncio.sleep(args.seconds)
    return Count(n=1)


def tools() -> ToolRegistry:
    return ToolRegistry([get_order, refund, slow, flaky, count, peek, refund_then_stall])


def classify(messages: object, kwargs: dict[str, object]) -> str:
    text = str(messages[-1].content).lower()  # type: ignore[index]
    intent = "return" if "return" in text or "refund" in text else "status"
    return json.dumps({"intent": intent, "order_id": "A1002"})


def refund_agent(messages: list[BaseMessage], kwargs: dict[str, object]) -> AIMessage:
    """An agent that refunds the order its task names (``refund A1005 10.0``), then answers:
    a pure function of the conversation, so a retried or replayed turn asks for the same call."""
    last = messages[-1]
    if isinstance(last, ToolMessage):
        return AIMessage("", tool_calls=[{"name": "final_answer", "args": {"summary": last.text}, "id": "done"}])
    _, order_id, amount = str(last.content).split()
    args = {"order_id": order_id, "amount": float(amount), "stall": 30.0}
    return AIMessage("", tool_calls=[{"name": "test.refund_then_stall", "args": args, "id": "refund"}])


def models() -> ModelRegistry:
    registry = ModelRegistry()
    registry.register("scripted-edge", ScriptedChatModel(respond=classify), Tier.EDGE)
    registry.register("scripted-agent", ScriptedChatModel(respond=refund_agent), Tier.PRIVATE)
    return registry
