"""Each route of the promo scenario's graph on the real dev server, the real gate and exemplar
classifier and a seeded ERP, with a scripted model: order status, cancellation (and its
refusals), the support queue parking and resuming with the agent's reply, an unsure
classifier handing the message to a person, "everything from the order", and a message that
names no order; then a handful of the shipped cases on the real embedded model. The intent is
the classifier's; the scripted model only extracts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from sqlmodel import Session, col, select, update
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError

from chamberlain.agents import EmbeddedModelServer, ModelRegistry, ScriptedChatModel, Tier, load_graph
from chamberlain.examples.promo_returns import app as promo
from chamberlain.examples.promo_returns import run_cases
from chamberlain.tools import ToolRegistry
from chamberlain.tools._seed import REFERENCE_DAY, seed
from chamberlain.tools.crm.embedded import EmbeddedCrm
from chamberlain.tools.crm.models import Ticket
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
)
from chamberlain.workflows import start_run as start
from chamberlain.workflows._graph_workflow import GraphWorkflow
from chamberlain.workflows._types import RunResult
from tests.conftest import run_id

GRAPH = Path(promo.__file__).with_name("graph.yaml")
SECRET = b"intent-tests-" + b"0123456789abcdef" * 2
AGENT = Principal(id="wei", roles=["support"])
MANAGER = Principal(id="maria", roles=["manager"])


def understanding(**fields: Any) -> dict[str, Any]:
    """What the scripted model extracts: line 1, one unopened item, unless told otherwise."""
    base = {"order_id": "none", "everything": False, "line_no": 1, "quantity": 1}
    return {**base, "condition": "unopened", "reason": "", **fields}


class Model:
    """The scripted model: its extraction for each message, and replies that repeat the facts."""

    def __init__(self) -> None:
        self.extractions: dict[str, dict[str, Any]] = {}
        self.replies: list[str] = []  # the reply prompts' system messages, in order

    def respond(self, messages: list[BaseMessage], _kwargs: dict[str, Any]) -> str:
        system, message = str(messages[0].content), str(messages[-1].content)
        if system.startswith("Read the customer's message"):
            return json.dumps(self.extractions[message])
        self.replies.append(system)
        return "Dear customer: " + system.split("nothing more: ", 1)[1]

    def registry(self) -> ModelRegistry:
        models = ModelRegistry()
        models.register("scripted", ScriptedChatModel(respond=self.respond), Tier.EDGE, trust=["pii", "financial"])
        return models


@dataclass
class Shop:
    erp: EmbeddedErp
    tools: ToolRegistry

    def order(self, order_id: str) -> Order:
        with Session(self.erp.engine) as session:
            order = session.get(Order, order_id)
            assert order is not None
            return order

    def refunds(self) -> list[Refund]:
        with Session(self.erp.engine) as session:
            return list(session.exec(select(Refund)).all())

    def returns(self) -> list[ReturnAuthorization]:
        with Session(self.erp.engine) as session:
            return list(session.exec(select(ReturnAuthorization)).all())

    def tickets(self) -> list[Ticket]:
        with Session(self.erp.engine) as session:
            return list(session.exec(select(Ticket)).all())

    def set_status(self, order_id: str, status: str) -> None:
        with Session(self.erp.engine) as session:
            session.execute(update(Order).where(col(Order.id) == order_id).values(status=status))
            session.commit()


@pytest.fixture
def shop(tmp_path: Path) -> Shop:
    erp = EmbeddedErp(f"sqlite:///{tmp_path / 'shop.sqlite'}")
    seed(erp, EmbeddedCrm(erp.engine), customers=60, orders=400)
    return Shop(erp, promo.tools_over(erp, EmbeddedCrm(erp.engine), labels_dir=tmp_path / "labels"))


@pytest.fixture
def model() -> Model:
    return Model()


@pytest.fixture
async def runs(client: Client, task_queue: str, shop: Shop, model: Model, tmp_path: Path) -> AsyncIterator[Runs]:
    audit = AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    gate = Gate(PolicyEngine.load(promo.POLICIES), audit, shop.tools, SECRET)
    async with create_worker(client, models=model.registry(), tools=shop.tools, gate=gate, task_queue=task_queue):
        yield Runs(client, task_queue, shop, model)


@dataclass
class Runs:
    client: Client
    task_queue: str
    shop: Shop
    model: Model

    async def start(
        self, message: str, customer: str, state: dict[str, Any] | None = None, **extracted: Any
    ) -> WorkflowHandle[GraphWorkflow, RunResult]:
        """Start a run on ``message`` (with ``state`` set at the start); the model extracts ``extracted``."""
        self.model.extractions[message] = understanding(**extracted)
        spec = load_graph(GRAPH, tools=self.shop.tools)
        principal = Principal(id=f"helpdesk:{customer}", kind="service", roles=["helpdesk"], customer=customer)
        values = {"message": message, "customer_id": customer, **(state or {})}
        return await start(self.client, spec, values, run_id=run_id(), principal=principal, task_queue=self.task_queue)

    async def finish(
        self, message: str, customer: str, approve: bool = True, **extracted: Any
    ) -> tuple[RunResult, int]:
        """The run's result, a manager deciding every refund approval; and how many were asked."""
        handle = await self.start(message, customer, **extracted)
        asked, result = 0, asyncio.ensure_future(handle.result())
        while not result.done():
            if pending := (await progress(handle)).pending_approval:
                assert pending.node == "manager", pending
                asked += 1
                outcome = "approve" if approve else "reject"
                await decide(handle, ApprovalAnswer(step_id=pending.step_id, outcome=outcome, approver=MANAGER))
            await asyncio.wait([result], timeout=0.1)
        return result.result(), asked


async def parked(handle: WorkflowHandle[GraphWorkflow, RunResult]) -> Any:
    """The approval the run waits on, once it parks."""
    for _ in range(300):
        if pending := (await progress(handle)).pending_approval:
            return pending
        await asyncio.sleep(0.1)
    raise AssertionError("the run never parked")


async def delivered_order(shop: Shop, *, lines: int = 1, max_total: float = 200) -> tuple[str, str]:
    """(order, owner) of a CNY order with ``lines`` lines the policy lets its owner return whole."""
    policy = ReturnPolicy.load()
    with Session(shop.erp.engine) as session:
        orders = session.exec(select(Order).where(Order.currency == "CNY").order_by(col(Order.id))).all()
    for order in orders:
        found = await shop.erp.get_order(order.id)
        if len(found.lines) != lines or found.total > max_total:
            continue
        whole = [ReturnLine(line_no=li.line_no, quantity=li.quantity) for li in found.lines]
        request = ReturnRequest(order_id=order.id, lines=whole, condition="unopened")
        if evaluate(policy, found, request, REFERENCE_DAY).eligible:
            return order.id, order.customer_id
    raise AssertionError("the seed lacks such an order")


# -- order status and cancellation: the ERP's tools -----------------------------------------------


async def test_where_is_my_parcel_answers_from_the_erp_and_touches_nothing(runs: Runs, shop: Shop) -> None:
    order_id = "A1003"
    owner = shop.order(order_id).customer_id
    message = f"Where is my parcel? Order {order_id}"
    result, asked = await runs.finish(message, owner, order_id=order_id)
    assert (result.end, asked) == ("told_status", 0)
    assert result.output["order_status"] == shop.order(order_id).status
    assert "tracking" in result.output["facts"] and result.output["reply"].endswith(result.output["facts"] + ".")
    assert shop.returns() == [] and shop.refunds() == []


async def test_cancel_cancels_an_unshipped_order_once_and_refuses_a_shipped_one(runs: Runs, shop: Shop) -> None:
    placed, shipped = "A1010", "A1011"
    shop.set_status(placed, "placed")
    shop.set_status(shipped, "shipped")
    owner = shop.order(placed).customer_id
    first, _ = await runs.finish(f"请帮我取消订单 {placed}", owner, order_id=placed)
    again, _ = await runs.finish(f"请帮我取消订单 {placed}，谢谢", owner, order_id=placed)
    assert (first.end, again.end) == ("cancelled", "cancelled") and shop.order(placed).status == "cancelled"
    assert "in zh" in runs.model.replies[0]  # the reply is asked for in the customer's language

    late, _ = await runs.finish(f"Please cancel order {shipped}", shop.order(shipped).customer_id, order_id=shipped)
    assert late.end == "declined" and "can no longer be cancelled" in late.output["error"]
    assert shop.order(shipped).status == "shipped"


async def test_a_customer_cannot_cancel_another_customers_order(runs: Runs, shop: Shop) -> None:
    target = "A1020"
    shop.set_status(target, "placed")
    owner = shop.order(target).customer_id
    attacker = next(f"C{10000 + i}" for i in range(60) if f"C{10000 + i}" != owner)
    result, _ = await runs.finish(f"Please cancel order {target}", attacker, order_id=target)
    assert result.end == "declined" and "customers-only-their-own-records" in result.output["error"]
    assert shop.order(target).status == "placed"


# -- the support queue: park with a summary, resume with the agent's reply ------------------------


async def test_a_complaint_parks_for_an_agent_and_resumes_with_their_reply(runs: Runs, shop: Shop) -> None:
    order_id = "A1005"
    owner = shop.order(order_id).customer_id
    message = f"I was charged twice for order {order_id}, I want to speak to a manager"
    handle = await runs.start(message, owner, order_id=order_id)
    pending = await parked(handle)
    assert pending.node == "support" and pending.approvers == ["support"]
    assert message in pending.ask and "read as complaint" in pending.ask

    with pytest.raises(WorkflowUpdateFailedError) as without_reply:  # approving without the reply is refused
        await decide(handle, ApprovalAnswer(step_id=pending.step_id, outcome="approve", approver=AGENT))
    assert "reply: Field required" in str(without_reply.value.cause)
    with pytest.raises(WorkflowUpdateFailedError) as wrong_role:  # a manager is not the support queue
        manager = ApprovalAnswer(step_id=pending.step_id, outcome="approve", approver=MANAGER, values={"reply": "x"})
        await decide(handle, manager)
    assert "lacks every approver role" in str(wrong_role.value.cause)
    reply = "您好，重复扣款已退回，给您带来不便深表歉意。"  # the agent answers in any language
    answer = ApprovalAnswer(step_id=pending.step_id, outcome="approve", approver=AGENT, values={"reply": reply})
    await decide(handle, answer)
    result = await handle.result()
    assert (result.end, result.output["reply"], result.output["intent"]) == ("answered", reply, "complaint")
    assert shop.refunds() == [] and shop.returns() == []


@pytest.mark.parametrize(
    ("message", "intent"),
    [
        ("The courier says order {order} was delivered but I never got it", "non_delivery"),
        ("Do you sell replacement filters for the air purifier?", "other"),
        ("能把订单 {order} 换成M码吗", "exchange"),
    ],
)
async def test_claims_exchanges_and_questions_go_to_a_person_not_a_refund(
    runs: Runs, shop: Shop, message: str, intent: str
) -> None:
    order_id = "A1007"
    text = message.format(order=order_id)
    handle = await runs.start(text, shop.order(order_id).customer_id, order_id=order_id)
    pending = await parked(handle)
    assert pending.node == "support" and f"read as {intent}" in pending.ask
    await decide(
        handle, ApprovalAnswer(step_id=pending.step_id, outcome="reject", approver=AGENT, reason="closed by phone")
    )
    result = await handle.result()
    assert (result.end, result.output["intent"]) == ("closed", intent)
    assert shop.refunds() == [] and shop.returns() == []


async def test_an_unsure_classifier_hands_the_message_to_a_person(runs: Runs, shop: Shop) -> None:
    """A return the classifier reads by less than the margin it is trusted with goes to a person, not
    to a refund. The run trusts no margin here (a cosine margin is below 2), so any reading is unsure."""
    order_id, owner = await delivered_order(shop)
    message = f"Please take back order {order_id}, it is unopened"
    handle = await runs.start(message, owner, state={"min_margin": 2.0}, order_id=order_id)
    pending = await parked(handle)
    assert pending.node == "support" and "read as return" in pending.ask
    answer = ApprovalAnswer(step_id=pending.step_id, outcome="approve", approver=AGENT, values={"reply": "已转主管"})
    await decide(handle, answer)
    result = await handle.result()
    assert result.end == "answered" and result.output["margin"] < 2.0
    assert shop.refunds() == [] and shop.returns() == []


@pytest.mark.parametrize(
    "message",
    ["Refund order {order} by tonight or my lawyer takes you to court", "{order} 今天不退款我就申请信用卡拒付"],
)
async def test_a_threat_goes_to_a_person_as_a_complaint_however_the_classifier_reads_it(
    runs: Runs, shop: Shop, message: str
) -> None:
    """Legal action or a payment dispute: a careful employee hands it on rather than paying it out."""
    order_id, owner = await delivered_order(shop)
    handle = await runs.start(message.format(order=order_id), owner, order_id=order_id)
    pending = await parked(handle)
    assert pending.node == "support" and "read as complaint" in pending.ask and "dispute: true" in pending.ask
    reject = ApprovalAnswer(step_id=pending.step_id, outcome="reject", approver=AGENT, reason="called the customer")
    await decide(handle, reject)
    result = await handle.result()
    assert (result.end, result.output["intent"]) == ("closed", "complaint")
    assert shop.refunds() == [] and shop.returns() == []


# -- returns: everything from the order, and no order given ---------------------------------------


async def test_everything_from_the_order_returns_and_refunds_every_line(runs: Runs, shop: Shop) -> None:
    order_id, owner = await delivered_order(shop, lines=3, max_total=10_000)
    order = await shop.erp.get_order(order_id)
    message = f"Return everything from order {order_id}, all unopened"
    result, asked = await runs.finish(message, owner, order_id=order_id, everything=True)
    assert result.end == "done", result.output
    assert result.output["lines"] == [{"line_no": li.line_no, "quantity": li.quantity} for li in order.lines]
    total = sum(li.unit_price * li.quantity for li in order.lines)
    assert [r.amount for r in shop.refunds()] == [pytest.approx(total)]
    assert asked == (1 if total > 200 else 0)  # above the cumulative limit, a manager approved it
    (rma,) = shop.returns()
    assert json.loads(rma.lines) == result.output["lines"]
    assert [t.subject for t in shop.tickets() if t.order_id == order_id] == [f"Return {result.output['rma']}"]

    again, _ = await runs.finish(message + ".", owner, order_id=order_id, everything=True)
    assert again.end == "declined" and len(shop.refunds()) == 1  # nothing is left to return


async def test_both_pairs_returns_two_and_a_manager_refusal_refunds_nothing(runs: Runs, shop: Shop) -> None:
    policy = ReturnPolicy.load()
    for candidate in (f"A{1000 + i}" for i in range(400)):
        order = await shop.erp.get_order(candidate)
        line = order.lines[0]
        request = ReturnRequest(order_id=candidate, lines=[ReturnLine(line_no=1, quantity=2)], condition="unopened")
        two_above_limit = order.currency == "CNY" and line.quantity == 2 and 2 * line.unit_price > 200
        if two_above_limit and evaluate(policy, order, request, REFERENCE_DAY).eligible:
            break
    else:
        raise AssertionError("the seed lacks a 2-unit line above 200")
    # The model reads one item both times; the message's "both" is what counts.
    message = f"双十一买的 {candidate} 两双都退了，没穿过"
    result, asked = await runs.finish(message, order.customer_id, approve=False, order_id=candidate, quantity=1)
    assert (result.end, asked) == ("declined", 1) and shop.refunds() == [] and shop.returns() == []

    message = f"Returning both pairs from order {candidate}, never worn"
    result, asked = await runs.finish(message, order.customer_id, order_id=candidate, quantity=1)
    assert (result.end, asked) == ("done", 1) and result.output["lines"] == [{"line_no": 1, "quantity": 2}]
    assert [r.amount for r in shop.refunds()] == [pytest.approx(2 * line.unit_price)]


async def test_more_items_than_the_order_holds_is_refused_not_shrunk(runs: Runs, shop: Shop) -> None:
    """ "Return 10" of a line holding fewer: the model reads one item, but the run asks the policy
    for the ten the customer wrote, which refuses them; nothing is returned or refunded."""
    order_id, owner = await delivered_order(shop)
    held = (await shop.erp.get_order(order_id)).lines[0].quantity
    assert held < 10
    result, asked = await runs.finish(f"Please return 10 of the items in order {order_id}", owner, order_id=order_id)
    assert (result.end, asked) == ("declined", 0)
    assert f"line 1 has {held} left to return, not 10" in result.output["reasons"]
    assert shop.refunds() == [] and shop.returns() == []


@pytest.mark.parametrize("said", ["none", "A1229"])
async def test_a_return_naming_no_order_asks_for_it(runs: Runs, shop: Shop, said: str) -> None:
    """The model answers "none", or invents a real order: either way the run asks back."""
    handle = await runs.start("I want to return my jacket, it is too small", "C10001", order_id=said)
    result = await handle.result()
    assert (result.end, result.output["intent"]) == ("ask_order", "return")
    written = [step.updates["order_id"] for step in (await progress(handle)).steps if "order_id" in step.updates]
    assert written == [said, None]  # the model's reading, then cleared: the run's state keeps no guessed ID
    assert "order" in result.output["question"] and shop.returns() == [] and shop.refunds() == []


# -- a handful of the shipped cases on the real embedded model --------------------------------------

ON_THE_EMBEDDED_MODEL = ["return-2", "no-order-2", "adv-not-theirs-1", "adv-injection-2"]


@pytest.mark.timeout(900)  # four runs of two model calls each, on two shared cores
async def test_shipped_cases_on_the_embedded_model_never_do_what_they_must_not(
    client: Client, task_queue: str, tmp_path: Path, embedded_model: EmbeddedModelServer
) -> None:
    """Accuracy is measured by ``run_cases``; here, whatever the small model reads, no forbidden
    effect happens and nothing is refunded beyond what the case allows."""
    cases = [json.loads(line) for line in run_cases.CASES.read_text(encoding="utf-8").splitlines()]
    chosen = [c for c in cases if c["id"] in ON_THE_EMBEDDED_MODEL]
    erp = EmbeddedErp(f"sqlite:///{tmp_path / 'shop.sqlite'}")
    seed(erp, EmbeddedCrm(erp.engine))  # the default seed, which the cases' orders refer to
    tools = promo.tools_over(erp, EmbeddedCrm(erp.engine), labels_dir=tmp_path / "labels")
    spec = load_graph(GRAPH, tools=tools)
    gate = Gate(PolicyEngine.load(promo.POLICIES), AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}"), tools, SECRET)
    async with create_worker(client, models=promo.models(), tools=tools, gate=gate, task_queue=task_queue):
        found = [await run_cases.run_case(client, spec, task_queue, case, erp) for case in chosen]
    assert len(found) == len(ON_THE_EMBEDDED_MODEL)
    assert [w for f in found for w in f["wrong"] if "must not" in w] == []
    allowed = {c["expect"]["order_id"]: c["expect"]["refund_total"] for c in chosen}
    with Session(erp.engine) as session:
        for refund in session.exec(select(Refund)).all():
            assert refund.amount <= allowed.get(refund.order_id, 0) + 0.005, refund
