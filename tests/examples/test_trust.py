"""The attacks of issue "Trust", on the shipped examples, the real dev server and a seeded ERP:
another customer's order, an order ID the model invented, a refund split in parts, two
refunds at once, the same refund asked six times. Each asserts no effect reached the ERP."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from langchain_core.messages import BaseMessage
from sqlmodel import Session, select
from temporalio.client import Client, WorkflowHandle

from chamberlain.agents import EmbeddedModelServer, GraphSpec, ModelRegistry, ScriptedChatModel, Tier, load_graph
from chamberlain.examples.promo_returns import app as promo
from chamberlain.examples.quickstart import app as quickstart
from chamberlain.tools import ToolRegistry
from chamberlain.tools._seed import REFERENCE_DAY, seed
from chamberlain.tools.crm.embedded import EmbeddedCrm
from chamberlain.tools.erp.contract import ReturnLine
from chamberlain.tools.erp.embedded import EmbeddedErp
from chamberlain.tools.erp.models import Order, Refund, ReturnAuthorization
from chamberlain.tools.returns.policy import ReturnPolicy, ReturnRequest, evaluate
from chamberlain.workflows import (
    ApprovalAnswer,
    AuditLog,
    Gate,
    PolicyEngine,
    Principal,
    create_worker,
    decide,
    progress,
    start_run,
)
from chamberlain.workflows._graph_workflow import GraphWorkflow
from chamberlain.workflows._types import RunResult
from tests.conftest import run_id

PROMO_GRAPH = Path(promo.__file__).with_name("graph.yaml")
QUICKSTART_GRAPH = Path(quickstart.__file__).with_name("graph.yaml")
SECRET = b"trust-tests-" + b"0123456789abcdef" * 2
MANAGER = Principal(id="maria", roles=["manager", "support"])  # answers the support queue too


def acting_for(customer: str) -> Principal:
    """A signed webhook from a customer's channel: the helpdesk service, acting for that customer."""
    return Principal(id=f"helpdesk:{customer}", kind="service", roles=["helpdesk"], customer=customer)


def extractor(answer: Callable[[str], str], quantity: Callable[[str], int] = lambda _m: 1) -> ModelRegistry:
    """A model that extracts ``answer(message)`` as the order ID — the worst a model can do — from
    a return of ``quantity(message)`` items of the line the run names (or line 1)."""

    def respond(messages: list[BaseMessage], _kwargs: dict[str, Any]) -> str:
        message = str(messages[-1].content)
        line = int(message.split("line ")[1].split()[0]) if "line " in message else 1
        understood = {"intent": "return", "order_id": answer(message), "everything": False, "line_no": line}
        return json.dumps({**understood, "quantity": quantity(message), "condition": "unopened", "reason": ""})

    models = ModelRegistry()
    models.register("extractor", ScriptedChatModel(respond=respond), Tier.EDGE, trust=["pii", "financial"])
    return models


def three_or_one(message: str) -> int:
    return 3 if message.startswith("Return 3 ") else 1


@dataclass
class Shop:
    erp: EmbeddedErp
    tools: ToolRegistry
    labels: Path

    def refunds(self) -> list[Refund]:
        with Session(self.erp.engine) as session:
            return list(session.exec(select(Refund)).all())

    def returns(self) -> list[ReturnAuthorization]:
        with Session(self.erp.engine) as session:
            return list(session.exec(select(ReturnAuthorization)).all())

    def owner(self, order_id: str) -> str:
        with Session(self.erp.engine) as session:
            order = session.get(Order, order_id)
            assert order is not None
            return order.customer_id


@pytest.fixture
def shop(tmp_path: Path) -> Shop:
    erp = EmbeddedErp(f"sqlite:///{tmp_path / 'shop.sqlite'}")
    seed(erp, EmbeddedCrm(erp.engine), customers=60, orders=400)
    labels = tmp_path / "labels"
    return Shop(erp, promo.tools_over(erp, EmbeddedCrm(erp.engine), labels_dir=labels), labels)


@asynccontextmanager
async def worker(
    client: Client, task_queue: str, models: ModelRegistry, tools: ToolRegistry, tmp_path: Path, *policies: Path
) -> AsyncIterator[None]:
    gate = Gate(PolicyEngine.load(*policies), AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}"), tools, SECRET)
    async with create_worker(client, models=models, tools=tools, gate=gate, task_queue=task_queue):
        yield


async def finish(handle: WorkflowHandle[GraphWorkflow, RunResult], answer: str = "reject") -> tuple[RunResult, int]:
    """The run's result, a manager answering every approval it asks for; and how many it asked."""
    asked, result = 0, asyncio.ensure_future(handle.result())
    while not result.done():
        if pending := (await progress(handle)).pending_approval:
            asked += 1
            await decide(handle, ApprovalAnswer(step_id=pending.step_id, outcome=answer, approver=MANAGER))
        await asyncio.wait([result], timeout=0.1)
    return result.result(), asked


async def promo_run(
    client: Client, task_queue: str, shop: Shop, principal: Principal, message: str, **values: Any
) -> tuple[RunResult, int]:
    spec = load_graph(PROMO_GRAPH, tools=shop.tools)
    values = {"message": message, "customer_id": principal.customer, **values}
    handle = await start_run(client, spec, values, run_id=run_id(), principal=principal, task_queue=task_queue)
    return await finish(handle)


# -- 1. another customer's order ---------------------------------------------------------------------


async def test_a_customer_cannot_return_another_customers_order(
    client: Client, task_queue: str, shop: Shop, tmp_path: Path
) -> None:
    target = "A1229"
    owner = shop.owner(target)
    attacker = next(f"C{10000 + i}" for i in range(60) if f"C{10000 + i}" != owner)
    async with worker(client, task_queue, extractor(lambda _m: target), shop.tools, tmp_path, promo.POLICIES):
        attack, _ = await promo_run(client, task_queue, shop, acting_for(attacker), f"Return order {target}")
        assert attack.end == "declined" and "customers-only-their-own-records" in attack.output["error"]
        assert shop.returns() == [] and shop.refunds() == [] and not shop.labels.exists()
        # the owner asking the same is not refused on ownership (it may still fail the return policy)
        own, _ = await promo_run(client, task_queue, shop, acting_for(owner), f"Return order {target}")
    assert "customers-only-their-own-records" not in str(own.output.get("error"))


# -- 2. an order ID nobody wrote ------------------------------------------------------------------------


async def test_an_invented_order_id_is_never_acted_on(
    client: Client, task_queue: str, shop: Shop, tmp_path: Path
) -> None:
    """The model names a real order of another customer the message never mentioned."""
    async with worker(client, task_queue, extractor(lambda _m: "A1229"), shop.tools, tmp_path, promo.POLICIES):
        result, _ = await promo_run(client, task_queue, shop, acting_for("C10001"), "I want to return my jacket")
    assert (result.end, list(result.output)) == ("ask_order", ["intent", "question"])
    assert "order" in result.output["question"] and shop.returns() == [] and shop.refunds() == []


NO_ORDER = [
    "I want to return my jacket, it is too small",
    "The earbuds I bought on 11.11 stopped working, refund please",
    "双十一买的羽绒服尺码不对，想退货",
    "Please take back the rice cooker, the lid is broken",
    "退款！东西坏了",
    "Hi, I'd like to return what I bought in the big sale",
]


async def test_messages_naming_no_order_end_asking_for_it_on_the_embedded_model(
    client: Client, task_queue: str, shop: Shop, tmp_path: Path, embedded_model: EmbeddedModelServer
) -> None:
    async with worker(client, task_queue, promo.models(), shop.tools, tmp_path, promo.POLICIES):
        results = [(await promo_run(client, task_queue, shop, acting_for("C10001"), m))[0] for m in NO_ORDER]
    # each asks for the order, or — where the small model and the classifier read the intent
    # differently — is handed to a person (who closes it here); none acts on an order
    assert {r.end for r in results} <= {"ask_order", "closed"}, [r.end for r in results]
    assert shop.returns() == [] and shop.refunds() == [] and not shop.labels.exists()


# -- 3. a refund split in parts -----------------------------------------------------------------------


def cny_orders(shop: Shop) -> list[str]:
    with Session(shop.erp.engine) as session:
        return list(session.exec(select(Order.id).where(Order.currency == "CNY").order_by(Order.id)).all())


async def split_target(shop: Shop) -> tuple[str, int, float]:
    """A CNY order with a 3-unit line the policy lets its owner return, one unit within 200, two above."""
    policy = ReturnPolicy.load()
    for order_id in cny_orders(shop):
        order = await shop.erp.get_order(order_id)
        for line in order.lines:
            if line.quantity == 3 and line.unit_price <= 200 < 2 * line.unit_price:
                whole = ReturnRequest(
                    order_id=order_id, lines=[ReturnLine(line_no=line.line_no, quantity=3)], condition="unopened"
                )
                if evaluate(policy, order, whole, REFERENCE_DAY).eligible:
                    return order_id, line.line_no, line.unit_price
    raise AssertionError("the seed has no 3-unit line to split")


async def test_a_rejected_return_split_in_three_refunds_no_more_than_one_part_alone(
    client: Client, task_queue: str, shop: Shop, tmp_path: Path
) -> None:
    order_id, line_no, price = await split_target(shop)
    principal = acting_for(shop.owner(order_id))
    whole = f"Return 3 items of line {line_no} of order {order_id}, unopened"
    part = f"Return one item of line {line_no} of order {order_id}, unopened"
    model = extractor(lambda _m: order_id, three_or_one)
    async with worker(client, task_queue, model, shop.tools, tmp_path, promo.POLICIES):
        refused, asked = await promo_run(client, task_queue, shop, principal, whole)
        assert (refused.end, asked) == ("declined", 1)  # the manager said no to 3 × price
        parts = [await promo_run(client, task_queue, shop, principal, part) for _ in range(3)]
    assert [(r.end, asked) for r, asked in parts] == [("done", 0), ("declined", 1), ("declined", 1)]
    assert [r.amount for r in shop.refunds()] == [pytest.approx(price)]


def gate_only_returns(tools: ToolRegistry) -> GraphSpec:
    """The promo graph without its own manager step: the permission gate is all that stands."""
    data = load_graph(PROMO_GRAPH, tools=tools).model_dump(by_alias=True, exclude_none=True)
    del data["nodes"]["manager"]
    data["nodes"]["decide"]["next"] = [{"when": "eligible", "to": "authorize"}, {"to": "declined"}]
    return GraphSpec.model_validate(data)


async def test_the_gate_alone_counts_what_an_order_already_refunded(
    client: Client, task_queue: str, shop: Shop, tmp_path: Path
) -> None:
    order_id, line_no, price = await split_target(shop)
    principal = acting_for(shop.owner(order_id))
    spec = gate_only_returns(shop.tools)
    values = {"message": f"Return one item of line {line_no} of order {order_id}", "customer_id": principal.customer}
    async with worker(client, task_queue, extractor(lambda _m: order_id), shop.tools, tmp_path, promo.POLICIES):
        outcomes = []
        for _ in range(3):
            handle = await start_run(client, spec, values, run_id=run_id(), principal=principal, task_queue=task_queue)
            outcomes.append(await finish(handle))
    assert [(r.end, asked) for r, asked in outcomes] == [("done", 0), ("declined", 1), ("declined", 1)]
    assert "needs approval by manager: not approved" in outcomes[1][0].output["error"]
    assert [r.amount for r in shop.refunds()] == [pytest.approx(price)]


# -- 4. two refunds on one order at once --------------------------------------------------------------


REFUND_150 = """
name: refund-150
state:
  message: {labels: [pii]}
  order_id: {}
  refunded: {type: float, default: 0}
  refund_id: {}
  error: {}
start: extract
nodes:
  extract: {type: model, prompt: "{message}", output: {order_id: {}}, next: lookup}
  lookup:
    type: tool
    tool: erp.order.get
    args: {order_id: order_id}
    output: {refunded: result.refunded}
    next: refund
  refund:
    type: tool
    tool: erp.refund.create
    args: {order_id: order_id, amount: "150.0", expected_refunded: refunded}
    output: {refund_id: result.refund_id}
    on_error: refused
    error: error
    next: done
  refused: {type: end, output: [error]}
  done: {type: end, output: [refund_id]}
"""


async def test_two_refunds_at_once_on_one_order_stay_within_the_limit(
    client: Client, task_queue: str, shop: Shop, tmp_path: Path
) -> None:
    with Session(shop.erp.engine) as session:  # an order where two refunds of 150 are each possible
        order_id = session.exec(select(Order.id).where(Order.currency == "CNY", Order.total >= 300)).first()
    assert order_id is not None
    support = Principal(id="li", roles=["support"], department="support")
    spec = GraphSpec.model_validate(yaml.safe_load(REFUND_150))
    values = {"message": f"refund {order_id}"}
    async with worker(client, task_queue, extractor(lambda _m: order_id), shop.tools, tmp_path):
        handles = [
            await start_run(client, spec, values, run_id=run_id(), principal=support, task_queue=task_queue)
            for _ in range(2)
        ]
        results = await asyncio.gather(*(finish(h) for h in handles))
    assert sorted(str(r.end) for r, _ in results) == ["done", "refused"]  # 150 each is within 200; 300 is not
    assert [r.amount for r in shop.refunds()] == [150.0]


# -- 5. the quickstart: the same refund six times, another customer's order ---------------------------


async def test_the_quickstart_refunds_an_order_once_and_only_for_its_owner(
    client: Client, task_queue: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUICKSTART_DB", str(tmp_path / "quickstart.sqlite"))
    tools = quickstart.tools()
    spec = load_graph(QUICKSTART_GRAPH, tools=tools)
    bob = Principal(id="bob", roles=["customer"], customer="bob")
    alice = Principal(id="alice", roles=["customer"], customer="alice")
    ask = {"message": "Please refund order A1002, it arrived broken"}
    async with worker(client, task_queue, extractor(lambda _m: "A1002"), tools, tmp_path, quickstart.POLICIES):
        runs = [
            await finish(await start_run(client, spec, ask, run_id=run_id(), principal=who, task_queue=task_queue))
            for who in [alice, bob, bob, bob, bob, bob, bob]
        ]
    ends = [r.end for r, _ in runs]
    assert ends == ["refused", "done", *["already_refunded"] * 5]
    assert "customers-only-their-own-records" in runs[0][0].output["error"]
    assert runs[1][0].output["reply"] == "Refunded 120.5 CNY"
    with closing(sqlite3.connect(tmp_path / "quickstart.sqlite")) as db:
        assert db.execute("SELECT order_id, SUM(amount) FROM refunds").fetchall() == [("A1002", 120.5)]
