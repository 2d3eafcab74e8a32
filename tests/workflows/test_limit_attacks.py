"""Attacks on the refund limits, as a dishonest customer or a compromised helpdesk agent makes
them: refunds raced at once, split over runs, order IDs spelled otherwise, odd amounts, other
customers' orders, currencies the limit does not know, one return refunded again. Limits are
cumulative per order (``refunds.cedar``) and a refund allowed alone is pinned to the refunded
amount it was decided on (the ERP refuses it if that changed): these tests hold them to it,
through the real gate, the shipped policies, the embedded ERP and real runs on Temporal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from sqlmodel import Session, select
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from chamberlain.agents import GraphSpec, ModelRegistry, ScriptedChatModel, StepContext, Tier, ToolCall
from chamberlain.agents._steps import ToolReply
from chamberlain.tools import ToolContext, ToolRegistry, ToolRejected
from chamberlain.tools._business import business_tools, erp_backend
from chamberlain.tools._seed import REFERENCE_DAY, seed
from chamberlain.tools.crm.embedded import EmbeddedCrm
from chamberlain.tools.erp.api import erp_api
from chamberlain.tools.erp.contract import OrderView, RefundRequest, RefundView
from chamberlain.tools.erp.embedded import EmbeddedErp
from chamberlain.tools.erp.models import Order, Payment, Refund
from chamberlain.workflows import (
    ApprovalAnswer,
    GraphWorkflow,
    Principal,
    RunResult,
    create_worker,
    decide,
    progress,
    start_run,
)
from chamberlain.workflows._audit import AuditLog
from chamberlain.workflows._gate import Gate, GateCheck
from chamberlain.workflows._policy import GateDecision, PolicyEngine
from tests.conftest import run_id
from tests.support.servers import serving
from tests.support.workers import TEST_SECRET

REFUND = "erp.refund.create"
ORDER = "A1003"  # C10007's, 512 CNY, nothing refunded: room for two 150s, not under one 200 limit
VICTIM = "A1004"  # C10009's, 957.6 CNY
OWNER = "C10007"
SUPPORT = Principal(id="sam", roles=["support"])
HELPDESK = Principal(id="helpdesk", kind="service", roles=["helpdesk"])
MARIA = Principal(id="maria", roles=["manager"])
LIMIT = 200.0  # support-refunds-up-to-200-cny
SPELLINGS = [  # the same order to a person; another key to the ERP
    "a1003",
    " A1003",
    "A1003 ",
    "A1003\t",
    "Ａ１００３",  # full-width
    "A01003",  # a leading zero
    "\u04101003",  # Cyrillic А
    "A1003\u200b",  # a zero-width space
    "A\u00ad1003",  # a soft hyphen
    "A1003%00",
]


@pytest.fixture
def erp(tmp_path: Path) -> EmbeddedErp:
    erp = EmbeddedErp(f"sqlite:///{tmp_path / 'erp.sqlite'}")
    seed(erp, EmbeddedCrm(erp.engine), customers=20, orders=30)
    return erp


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    return AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}")


def tools_over(erp: Any) -> ToolRegistry:
    """The business tools over ``erp`` (the embedded ERP, its HTTP client, or a slow one)."""
    return business_tools(erp, EmbeddedCrm(erp.engine if isinstance(erp, EmbeddedErp) else erp.real.engine))


def shipped_gate(tools: ToolRegistry, audit: AuditLog) -> Gate:
    return Gate(PolicyEngine.load(), audit, tools, TEST_SECRET)


def refund_call(run: str, args: dict[str, Any], tool: str = REFUND) -> ToolCall:
    return ToolCall(step=StepContext(run_id=run, node="refund", visit=1), tool=tool, args=args)


async def decide_then_act(
    gate: Gate, principal: Principal, calls: Sequence[ToolCall]
) -> tuple[list[GateDecision], list[ToolReply | None]]:
    """Every call decided at once (as runs started together are), then each allowed one acted
    in the order given: the worst interleaving for the limit."""
    decisions = await asyncio.gather(*(gate.check(GateCheck(call=c, principal=principal, grant=None)) for c in calls))
    replies: list[ToolReply | None] = []
    for call, decision in zip(calls, decisions, strict=True):
        allowed = decision.outcome == "allow" and decision.ticket is not None
        replies.append(await gate.act(call, decision.ticket, 1) if allowed else None)
    return list(decisions), replies


def refunded(erp: EmbeddedErp, order_id: str = ORDER) -> float:
    with Session(erp.engine) as session:
        return sum(p.refunded for p in session.exec(select(Payment).where(Payment.order_id == order_id)).all())


def refunds(erp: EmbeddedErp) -> list[Refund]:
    with Session(erp.engine) as session:
        return list(session.exec(select(Refund)).all())


def allowed_alone(audit: AuditLog) -> float:
    """The amount refunded on allowances nobody approved, as the audit log records them."""
    return sum(
        r.amount or 0.0
        for r in audit.records()
        if r.action == REFUND and r.kind == "effect" and "approved by" not in r.principal
    )


# -- 1. a race: refunds decided at once ------------------------------------------------------------


async def test_refunds_decided_at_once_on_what_was_refunded_then_pass_once(erp: EmbeddedErp, audit: AuditLog) -> None:
    """Three refunds of 150 decided together, each pinned to the 0 refunded they saw: each is
    under the limit alone, but only the first may happen — the others were decided on a past."""
    gate = shipped_gate(tools_over(erp), audit)
    calls = [refund_call(f"race-{i}", {"order_id": ORDER, "amount": 150, "expected_refunded": 0}) for i in range(3)]
    decisions, replies = await decide_then_act(gate, SUPPORT, calls)
    assert [d.outcome for d in decisions] == ["allow"] * 3  # each alone is within the limit
    happened = [r for r in replies if r is not None and r.error is None]
    assert len(happened) == 1 and refunded(erp) == 150
    assert all("decided on" in r.error.message for r in replies if r is not None and r.error is not None)
    assert allowed_alone(audit) == 150


async def test_a_refund_pinned_ahead_to_a_refund_not_yet_made_is_not_allowed_alone(
    erp: EmbeddedErp, audit: AuditLog
) -> None:
    """A compromised agent decides two 150s at once: the first pinned to 0, the second to 150 —
    the refunded amount it will find once the first has landed. Both are decided on "0 refunded"
    (150 cumulative each), so both are allowed alone, and the ERP's pin passes both: 300 in all
    on one order, over the 200 limit, and no manager asked."""
    gate = shipped_gate(tools_over(erp), audit)
    first = refund_call("first", {"order_id": ORDER, "amount": 150, "expected_refunded": 0})
    second = refund_call("second", {"order_id": ORDER, "amount": 150, "expected_refunded": 150})
    await decide_then_act(gate, SUPPORT, [first, second])
    assert allowed_alone(audit) <= LIMIT and refunded(erp) <= LIMIT


# -- the same races in real runs on one worker --------------------------------------------------------


def lookup_then_refund() -> GraphSpec:
    """The honest shape: the pin is the refunded amount the run just read, never an argument."""
    return GraphSpec.model_validate(
        {
            "name": "limit-refund",
            "grant": ["erp.order.read", REFUND],
            "state": {
                "order_id": {"type": "str"},
                "amount": {"type": "float", "default": 0},
                "refunded": {"type": "float", "default": 0},
                "refund_id": {"type": "str"},
                "error": {"type": "str"},
            },
            "start": "lookup",
            "nodes": {
                "lookup": {
                    "type": "tool",
                    "tool": "erp.order.get",
                    "args": {"order_id": "order_id"},
                    "output": {"refunded": "result.refunded"},
                    "on_error": "refused",
                    "error": "error",
                    "next": "refund",
                },
                "refund": {
                    "type": "tool",
                    "tool": REFUND,
                    "args": {"order_id": "order_id", "amount": "amount", "expected_refunded": "refunded"},
                    "output": {"refund_id": "result.refund_id"},
                    "on_error": "refused",
                    "error": "error",
                    "next": "done",
                },
                "refused": {"type": "end", "output": ["error"]},
                "done": {"type": "end"},
            },
        }
    )


def model_chooses_the_refund() -> GraphSpec:
    """A helpdesk graph whose model fills in the refund, pin included (as an agent's tool call does)."""
    fields = {"order_id": {"type": "str"}, "amount": {"type": "float"}, "expected_refunded": {"type": "float"}}
    return GraphSpec.model_validate(
        {
            "name": "helpdesk-refund",
            "grant": [REFUND],
            "state": {
                "message": {"type": "str", "labels": ["pii"]},
                "order_id": {"type": "str"},
                "amount": {"type": "float", "default": 0},
                "expected_refunded": {"type": "float", "default": 0},
                "refund_id": {"type": "str"},
                "error": {"type": "str"},
            },
            "start": "read",
            "nodes": {
                "read": {"type": "model", "prompt": "{message}", "next": "refund", "output": fields},
                "refund": {
                    "type": "tool",
                    "tool": REFUND,
                    "args": {name: name for name in fields},
                    "output": {"refund_id": "result.refund_id"},
                    "on_error": "refused",
                    "error": "error",
                    "next": "done",
                },
                "refused": {"type": "end", "output": ["error"]},
                "done": {"type": "end"},
            },
        }
    )


def obedient(messages: Sequence[BaseMessage], kwargs: dict[str, Any]) -> str:
    """A model that does what the message says (the worst a prompt injection reaches): it answers
    with the JSON the customer wrote."""
    found = re.search(r"\{.*\}", str(messages[-1].content))
    assert found, messages[-1].content
    return found.group(0)


def obedient_models() -> ModelRegistry:
    models = ModelRegistry()
    models.register("obedient", ScriptedChatModel(respond=obedient), Tier.EDGE, trust=["pii"])
    return models


@asynccontextmanager
async def worker_over(client: Client, task_queue: str, tools: ToolRegistry, audit: AuditLog) -> AsyncIterator[None]:
    async with create_worker(
        client, models=obedient_models(), tools=tools, gate=shipped_gate(tools, audit), task_queue=task_queue
    ):
        yield


async def start(
    client: Client, task_queue: str, graph: GraphSpec, values: dict[str, Any]
) -> WorkflowHandle[GraphWorkflow, RunResult]:
    return await start_run(client, graph, values, run_id=run_id(), task_queue=task_queue, principal=SUPPORT)


async def settle(handle: WorkflowHandle[GraphWorkflow, RunResult]) -> tuple[RunResult, bool]:
    """The run's result, a manager rejecting any approval it waits for; and whether it waited."""
    while (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
        if pending := (await progress(handle)).pending_approval:
            answer = ApprovalAnswer(step_id=pending.step_id, outcome="reject", approver=MARIA, reason="split refund")
            await decide(handle, answer)
            return await handle.result(), True
        await asyncio.sleep(0.05)
    return await handle.result(), False


async def test_runs_started_together_refund_past_the_limit_only_with_approval(
    client: Client, task_queue: str, erp: EmbeddedErp, audit: AuditLog
) -> None:
    """Three runs at once, each refunding 150 on one order after looking it up: whichever way
    they interleave, one refund happens alone; each other one is refused by the ERP (decided
    on a past refunded amount) or waits for a manager, who says no."""
    tools = tools_over(erp)
    async with worker_over(client, task_queue, tools, audit):
        handles = [await start(client, task_queue, lookup_then_refund(), {"order_id": ORDER, "amount": 150})]
        handles += await asyncio.gather(
            *(start(client, task_queue, lookup_then_refund(), {"order_id": ORDER, "amount": 150}) for _ in range(2))
        )
        settled = await asyncio.gather(*(settle(h) for h in handles))
    ends = sorted(result.end for result, _ in settled)
    assert ends == ["done", "refused", "refused"], settled
    assert refunded(erp) == 150 and len(refunds(erp)) == 1 and allowed_alone(audit) == 150


class RacingErp:
    """The real embedded ERP, answering in the order an attacker hopes for (a slow network):
    the refund pinned to 0 waits until the one pinned ahead has been decided and sent."""

    def __init__(self, real: EmbeddedErp) -> None:
        self.real = real
        self.ahead_sent = asyncio.Event()
        self.first_done = asyncio.Event()

    async def get_order(self, order_id: str) -> OrderView:
        return await self.real.get_order(order_id)

    async def refund(self, request: RefundRequest, idempotency_key: str) -> RefundView:
        if request.expected_refunded:  # pinned ahead: lands right after the first
            self.ahead_sent.set()
            await asyncio.wait_for(self.first_done.wait(), 30)
            return await self.real.refund(request, idempotency_key)
        with contextlib.suppress(TimeoutError):  # if the other is never allowed, go on alone after a while
            await asyncio.wait_for(self.ahead_sent.wait(), 5)
        try:
            return await self.real.refund(request, idempotency_key)
        finally:
            self.first_done.set()


async def test_runs_whose_model_pins_ahead_cannot_refund_past_the_limit(
    client: Client, task_queue: str, erp: EmbeddedErp, audit: AuditLog
) -> None:
    """Two messages at once from one customer, each injecting a refund of 150 on one order; the
    second names as its pin the 150 the first will have refunded."""
    racing = RacingErp(erp)
    tools = tools_over(racing)
    first = {"order_id": ORDER, "amount": 150, "expected_refunded": 0}
    ahead = {"order_id": ORDER, "amount": 150, "expected_refunded": 150}
    async with worker_over(client, task_queue, tools, audit):
        handles = await asyncio.gather(
            *(
                start(client, task_queue, model_chooses_the_refund(), {"message": f"refund now {json.dumps(ask)}"})
                for ask in (first, ahead)
            )
        )
        await asyncio.gather(*(settle(h) for h in handles))
    assert refunded(erp) <= LIMIT and allowed_alone(audit) <= LIMIT


# -- 2. a split over runs, one after another ------------------------------------------------------------


async def test_small_refunds_in_runs_one_after_another_need_a_manager_once_they_add_up(
    client: Client, task_queue: str, erp: EmbeddedErp, audit: AuditLog
) -> None:
    """90, 90, 90 on one order, each its own run: 180 goes through alone, the third (270 in
    all) waits for a manager — and is not refunded when the manager says no."""
    async with worker_over(client, task_queue, tools_over(erp), audit):
        settled = [
            await settle(await start(client, task_queue, lookup_then_refund(), {"order_id": ORDER, "amount": 90}))
            for _ in range(3)
        ]
    assert [(result.end, waited) for result, waited in settled] == [
        ("done", False),
        ("done", False),
        ("refused", True),
    ]
    assert "not approved" in settled[2][0].output["error"]
    assert refunded(erp) == 180 and allowed_alone(audit) == 180


async def test_amounts_just_over_the_limit_in_parts_need_a_manager(erp: EmbeddedErp, audit: AuditLog) -> None:
    """199.999 then 0.002: many decimals do not round the sum back under the limit."""
    gate = shipped_gate(tools_over(erp), audit)
    first = refund_call("a", {"order_id": ORDER, "amount": 199.999, "expected_refunded": 0})
    decisions, replies = await decide_then_act(gate, SUPPORT, [first])
    assert decisions[0].outcome == "allow" and replies[0] is not None and replies[0].error is None
    for amount in (0.002, 0.001 + 1e-7, 200.001 - 199.999):
        again = refund_call(f"b{amount}", {"order_id": ORDER, "amount": amount, "expected_refunded": 199.999})
        decision = await gate.check(GateCheck(call=again, principal=SUPPORT, grant=None))
        assert decision.outcome == "needs_approval", (amount, decision)
    assert refunded(erp) == pytest.approx(199.999)


# -- 3. an order ID spelled otherwise ---------------------------------------------------------------


@pytest.mark.parametrize("spelling", SPELLINGS)
async def test_an_order_id_spelled_otherwise_is_refused_and_refunds_nothing(
    erp: EmbeddedErp, audit: AuditLog, spelling: str
) -> None:
    """The decision and the ERP key the order alike — exactly: a spelling that is not the ID
    finds no order, so the decision has no amounts to count (refused, not sent for approval),
    and the ERP refunds nothing on it either."""
    gate = shipped_gate(tools_over(erp), audit)
    call = refund_call("spelled", {"order_id": spelling, "amount": 150, "expected_refunded": 0})
    decision = await gate.check(GateCheck(call=call, principal=SUPPORT, grant=None))
    assert decision.outcome == "deny" and "no-refund-without-the-order-amounts" in decision.policies
    with pytest.raises(ToolRejected, match="has no payment"):
        await erp.refund(RefundRequest(order_id=spelling, amount=150, expected_refunded=0), f"k-{spelling!r}")
    assert refunded(erp) == 0 and refunds(erp) == []


async def test_spellings_in_turn_do_not_reset_the_cumulative_limit(erp: EmbeddedErp, audit: AuditLog) -> None:
    """150 on the order, then 150 on each spelling of it: each later one is refused outright."""
    gate = shipped_gate(tools_over(erp), audit)
    first = refund_call("exact", {"order_id": ORDER, "amount": 150, "expected_refunded": 0})
    calls = [first] + [
        refund_call(f"s{i}", {"order_id": s, "amount": 150, "expected_refunded": 150}) for i, s in enumerate(SPELLINGS)
    ]
    decisions = []
    for call in calls:  # one after another: each sees what the earlier ones did
        decided, _ = await decide_then_act(gate, SUPPORT, [call])
        decisions += decided
    assert [d.outcome for d in decisions] == ["allow"] + ["deny"] * len(SPELLINGS)
    assert refunded(erp) == 150


async def test_over_http_the_decision_reads_the_order_the_refund_names(erp: EmbeddedErp, audit: AuditLog) -> None:
    """C10009's channel names C10007's A1003 in an ID whose URL path resolves to its own A1004
    ("A1003/../A1004", "A1004?of=A1003"): the gate reads A1004 (owner C10009, nothing refunded)
    and allows; the refund names another key. Today the ERP keys the body exactly, so nothing
    moves; an ERP facade that resolved the body's ID as its router does would refund A1003."""
    with serving(erp_api(erp)) as url:
        gate = shipped_gate(business_tools(erp_backend(url), EmbeddedCrm(erp.engine)), audit)
        customer = Principal(id="chat", kind="service", roles=["support"], customer="C10009")
        resolved = []
        for spelling in (f"{ORDER}/../{VICTIM}", f"{VICTIM}?of={ORDER}", f"{VICTIM}#{ORDER}"):
            call = refund_call("http", {"order_id": spelling, "amount": 150, "expected_refunded": 0})
            decision = await gate.check(GateCheck(call=call, principal=customer, grant=None))
            if decision.outcome == "allow":  # the ERP itself keys the body exactly: nothing moves
                reply = await gate.act(call, decision.ticket, 1)
                assert reply.error is not None and "has no payment" in reply.error.message
            owner = decision.resource.attributes.get("owner") if decision.resource else None
            resolved.append((spelling, decision.outcome, owner))
    assert refunded(erp, VICTIM) == 0 and refunds(erp) == []
    assert all(owner is None for _, _, owner in resolved), resolved


# -- 4. odd amounts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "amount",
    [0, -150, -0.0, float("nan"), "NaN", float("-inf"), "-1e3", [150], None, "", "1 50", "150 CNY"],
    ids=repr,
)
async def test_an_amount_that_is_no_refund_is_a_correctable_input_error(
    erp: EmbeddedErp, audit: AuditLog, amount: Any
) -> None:
    """Zero, negative, not-a-number, not-a-number-at-all: the gate refuses the arguments
    (the model may correct them) and nothing is refunded, before any policy is asked."""
    gate = shipped_gate(tools_over(erp), audit)
    call = refund_call("odd", {"order_id": ORDER, "amount": amount, "expected_refunded": 0})
    decision = await gate.check(GateCheck(call=call, principal=SUPPORT, grant=None))
    assert decision.outcome == "deny" and decision.invalid and "amount" in decision.reason
    assert refunded(erp) == 0


@pytest.mark.parametrize("amount", [1e20, 9.3e16, 1e308, float("inf"), "inf", "Infinity", "1e400"], ids=repr)
async def test_a_huge_amount_is_never_allowed(erp: EmbeddedErp, audit: AuditLog, amount: Any) -> None:
    """Amounts past what Cedar's integers hold (or infinite) must not slip between the limits:
    the gate refuses them, or fails closed; nothing is refunded, and no manager is asked to
    approve an infinite refund."""
    gate = shipped_gate(tools_over(erp), audit)
    call = refund_call("huge", {"order_id": ORDER, "amount": amount, "expected_refunded": 0})
    try:
        decision = await gate.check(GateCheck(call=call, principal=SUPPORT, grant=None))
    except (OverflowError, TypeError, ValueError):  # fails closed: no decision, no ticket
        decision = None
    assert decision is None or decision.outcome == "deny", decision
    assert refunded(erp) == 0


@pytest.mark.parametrize(("amount", "outcome"), [("150", "allow"), ("1.5e2", "allow"), ("200.01", "needs_approval")])
async def test_an_amount_as_a_string_is_counted_as_its_number(
    erp: EmbeddedErp, audit: AuditLog, amount: str, outcome: str
) -> None:
    """The number a string spells is what the limit counts and what the ERP refunds."""
    gate = shipped_gate(tools_over(erp), audit)
    call = refund_call("text", {"order_id": ORDER, "amount": amount, "expected_refunded": 0})
    decisions, replies = await decide_then_act(gate, SUPPORT, [call])
    assert decisions[0].outcome == outcome
    assert refunded(erp) == (float(amount) if outcome == "allow" else 0)
    assert all(r is None or r.error is None for r in replies)


# -- currencies -------------------------------------------------------------------------------------


def order_in(erp: EmbeddedErp, order_id: str, currency: str, total: float) -> None:
    """An order of C10007's, paid in ``currency``, as an ERP abroad would hold it."""
    with Session(erp.engine) as session:
        placed = datetime(2026, 11, 20, tzinfo=UTC)
        fields = {"customer_id": OWNER, "placed_at": placed, "currency": currency, "total": total, "warehouse": "SH1"}
        session.add(Order(id=order_id, **fields))
        session.add(Payment(order_id=order_id, method="card", amount=total, currency=currency))
        session.commit()


async def test_a_refund_in_hkd_or_usd_counts_in_cny(erp: EmbeddedErp, audit: AuditLog) -> None:
    """The limit is in CNY: 210 HKD (195 CNY) goes through alone, 30 USD (213 CNY) does not."""
    order_in(erp, "U9001", "USD", 500)
    gate = shipped_gate(tools_over(erp), audit)
    hkd = refund_call("hkd", {"order_id": "A1001", "amount": 210, "expected_refunded": 0})  # an HKD order
    usd = refund_call("usd", {"order_id": "U9001", "amount": 30, "expected_refunded": 0})
    decisions, _ = await decide_then_act(gate, SUPPORT, [hkd, usd])
    assert [d.outcome for d in decisions] == ["allow", "needs_approval"]


@pytest.mark.parametrize("currency", ["GBP", "usd", "KWD"])
async def test_a_refund_in_a_currency_the_limit_does_not_know_is_not_allowed_alone(
    erp: EmbeddedErp, audit: AuditLog, currency: str
) -> None:
    """150 GBP is about 1,370 CNY, 150 usd 1,065, 150 KWD 3,500: none is a small refund."""
    order_in(erp, "X9001", currency, 1000)
    gate = shipped_gate(tools_over(erp), audit)
    call = refund_call("fx", {"order_id": "X9001", "amount": 150, "expected_refunded": 0})
    decisions, _ = await decide_then_act(gate, SUPPORT, [call])
    assert decisions[0].outcome != "allow"
    assert refunded(erp, "X9001") == 0


# -- 5. another customer's order --------------------------------------------------------------------


@pytest.mark.parametrize("order_id", [VICTIM, *(s.replace(ORDER, VICTIM) for s in SPELLINGS), "a1004", "Ａ１００４"])
async def test_a_customer_refunds_no_other_customers_order_in_any_spelling(
    erp: EmbeddedErp, audit: AuditLog, order_id: str
) -> None:
    """A customer's channel (even one given the support role) is refused someone else's order,
    however it is spelled — outright, not sent to a manager — while its own small refund passes."""
    gate = shipped_gate(tools_over(erp), audit)
    customer = Principal(id="chat", kind="service", roles=["support"], customer=OWNER)
    theirs = refund_call("theirs", {"order_id": order_id, "amount": 10, "expected_refunded": 0})
    own = refund_call("own", {"order_id": ORDER, "amount": 10, "expected_refunded": 0})
    decisions, _ = await decide_then_act(gate, customer, [theirs, own])
    assert decisions[0].outcome == "deny" and "customers-only-their-own-records" in decisions[0].policies
    assert decisions[1].outcome == "allow"
    assert refunded(erp, VICTIM) == 0 and refunded(erp) == 10


async def test_a_customer_named_otherwise_than_the_owner_is_refused_its_own_order(
    erp: EmbeddedErp, audit: AuditLog
) -> None:
    """Ownership compares exactly: a channel naming the customer with another case or spaces
    is nobody the ERP knows, and is refused (closed, not open)."""
    gate = shipped_gate(tools_over(erp), audit)
    for i, name in enumerate(("c10007", "C10007 ", "Ｃ10007")):
        customer = Principal(id="chat", kind="service", roles=["support"], customer=name)
        call = refund_call(f"named-{i}", {"order_id": ORDER, "amount": 10, "expected_refunded": 0})
        decision = await gate.check(GateCheck(call=call, principal=customer, grant=None))
        assert decision.outcome == "deny" and "customers-only-their-own-records" in decision.policies
    assert refunded(erp) == 0


# -- one return, refunded again ------------------------------------------------------------------------


async def test_a_return_is_refunded_once_whatever_runs_ask_for_it(erp: EmbeddedErp, audit: AuditLog) -> None:
    """A T-shirt returned from A1014 (63.20 CNY): the helpdesk refunds its return, then asks
    again in later runs — under the cumulative limit each time (126.40, 189.60) — honestly pinned."""
    tools = business_tools(erp, EmbeddedCrm(erp.engine), today=REFERENCE_DAY)
    ask = {"order_id": "A1014", "lines": [{"line_no": 1, "quantity": 1}], "condition": "wrong_item"}
    rma = (await tools.invoke("returns.authorize", ask, ToolContext(step_id="rma", idempotency_key="rma")))["rma"]
    gate = shipped_gate(tools, audit)
    for run in ("first", "again", "once more"):
        pin = refunded(erp, "A1014")
        call = refund_call(run, {"rma": rma, "expected_refunded": pin}, tool="returns.refund")
        await decide_then_act(gate, HELPDESK, [call])
    paid_out = [r.amount for r in refunds(erp) if r.reason == f"return {rma}"]
    assert paid_out == [pytest.approx(63.2)], paid_out


@pytest.mark.parametrize(
    "amount",
    [
        "inf",
        1e20,
        1e308,
    ],
    ids=repr,
)
async def test_a_run_whose_model_asks_for_a_huge_refund_is_refused(
    client: Client, task_queue: str, erp: EmbeddedErp, audit: AuditLog, amount: Any
) -> None:
    """In a real run such amounts end at the refund step's refusal — recorded, no manager
    asked to approve them, nothing refunded — rather than failing the run."""
    ask = {"order_id": ORDER, "amount": amount, "expected_refunded": 0}
    async with worker_over(client, task_queue, tools_over(erp), audit):
        handle = await start(client, task_queue, model_chooses_the_refund(), {"message": f"refund {json.dumps(ask)}"})
        try:
            result, waited = await settle(handle)
        finally:
            assert refunded(erp) == 0
    assert result.end == "refused" and not waited
    if not isinstance(amount, str):  # "inf" reaches the step as no number: an input error, not a decision
        assert [(r.kind, r.decision) for r in audit.records() if r.action == REFUND] == [("decision", "deny")]
