"""Attacks and crashes against a write step decided in its own activity
(:meth:`Gate.decide_and_act` with ``writes``): the held ticket must survive a SIGKILL between
the effect and the activity's completion and be honoured by a worker whose policy would now
refuse; a held ticket copied onto another step must be refused; two attempts racing must
act on one allowance; and the held-ticket table must behave the same on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter
from itertools import count

import pytest
from pydantic import BaseModel
from sqlalchemy import text
from temporalio.client import Client

from chamberlain.agents._steps import StepContext, ToolCall
from chamberlain.tools import Effect, Resource, ToolContext, ToolRegistry, tool
from chamberlain.workflows import AuditLog, DevServer, Gate, PolicyEngine
from chamberlain.workflows._gate import ActedStep, DecidedStep, GateCheck, NoValidTicket
from tests.reliability.test_effect_once import killed_after_the_refund_recorded, spawn
from tests.support import toolbox
from tests.support.worker_process import forbidding
from tests.support.workers import TEST_POLICY, TEST_SECRET, audit_log

# -- durable: a SIGKILL between the effect and the activity's completion ------------------------


@pytest.mark.chaos
async def test_a_refund_held_and_paid_before_a_kill_completes_on_a_worker_that_would_now_refuse_it(
    client: Client, dev_server: DevServer, task_queue: str
) -> None:
    """The refund's activity held its ticket and paid, then its worker was SIGKILLed before the
    activity completed. The retry runs on a worker whose policy forbids refunds: deciding again
    would refuse a refund already paid; it acts on the held ticket instead."""
    action = toolbox.tools()["erp.refund"].policy_action
    refusing = Gate(PolicyEngine([forbidding(action)]), audit_log(), toolbox.tools(), TEST_SECRET)
    fresh = ToolCall(
        step=StepContext(run_id="probe", node="refund", visit=1),
        tool="erp.refund",
        args={"order_id": "A1005", "amount": toolbox.ORDER_TOTAL},
    )
    probe = await refusing.check(GateCheck(call=fresh, principal=None, grant=None, write_ahead=True))
    assert probe.outcome == "deny"  # the second worker's policy does refuse a fresh decision

    handle = await killed_after_the_refund_recorded(client, dev_server, task_queue)  # held, paid, recorded
    rid = handle.id
    assert audit_log().held([f"{rid}/refund/1"]) != {}  # the allowance outlived the worker

    worker = spawn(dev_server.address, task_queue, "forbid", action)
    try:
        result = await handle.result()
    finally:
        worker.kill()
        worker.wait()
    assert result.status == "completed" and result.output["refund_id"] == "R-A1005"  # no refusal
    assert Counter(toolbox.effects("refund")) == {("refund", f"{rid}/refund/1"): 2}  # retried, same step key
    audit = audit_log()
    mine = [(r.step_id, r.kind, r.decision) for r in audit.records() if r.run_id == rid]
    assert (f"{rid}/refund/1", "decision", "deny") not in mine
    assert [m for m in mine if m[0] == f"{rid}/refund/1"] == [(f"{rid}/refund/1", "effect", "allow")]
    assert audit.verify() is None
    assert audit.held([f"{rid}/refund/1"]) == {}  # released by the run's seal once its record was committed


# -- in-process attacks on the held ticket, on SQLite and PostgreSQL ---------------------------

PERMIT = TEST_POLICY.read_text(encoding="utf-8")
LEFT = """
@id("refund-what-is-left")
permit (principal, action, resource) when { context.amount_cents <= context.refundable_cents };
"""
paid: list[str] = []  # the steps the refund executed for, in order
reads = count()  # every read of the order: each fresh decision sees a new resource
race: dict[str, object] = {}  # an attempt to run inside the next read of the order (see the race test)


class Refund(BaseModel):
    order_id: str
    amount: float


async def order(args: Refund) -> Resource:
    """The order as the backend reports it now: refunded so far, and how often it was read."""
    if (interleave := race.pop("during_read", None)) is not None:
        await interleave  # type: ignore[misc]
    attributes = {"amount": args.amount, "total": 100.0, "refunded": 80.0 * len(paid), "reads": next(reads)}
    return Resource("Order", args.order_id, attributes)


@tool("attack.refund", effect=Effect.WRITE, action="erp.refund.create", resource=order)
async def refund(args: Refund, ctx: ToolContext) -> Refund:
    paid.append(ctx.step_id)
    return args


def gate(audit: AuditLog, policy: str = PERMIT) -> Gate:
    return Gate(PolicyEngine([policy]), audit, ToolRegistry([refund]), TEST_SECRET)


def check(node: str, run: str = "r") -> GateCheck:
    call = ToolCall(
        step=StepContext(run_id=run, node=node, visit=1), tool="attack.refund", args={"order_id": "A1", "amount": 80.0}
    )
    return GateCheck(call=call, principal=None, grant=None, write_ahead=True)


@pytest.fixture
def audit(database_url: str) -> AuditLog:
    paid.clear()
    race.clear()
    return AuditLog(database_url)


def held_rows(audit: AuditLog) -> list[tuple[str, str]]:
    with audit.engine.connect() as db:
        rows = db.execute(text("SELECT step_id, ticket FROM audit_held_ticket ORDER BY step_id"))
        return [(row.step_id, row.ticket) for row in rows]


@pytest.mark.parametrize(("node", "run"), [("other", "r"), ("pay", "r2")], ids=["other-step", "other-run"])
async def test_a_held_ticket_copied_onto_another_step_is_refused_and_the_tool_does_not_act(
    audit: AuditLog, node: str, run: str
) -> None:
    checks = gate(audit)
    first = await checks.decide_and_act(check("pay"), attempt=1, writes=True)
    assert first.reply is not None and first.reply.error is None
    [(_, ticket)] = held_rows(audit)
    target = check(node, run).call.step
    with audit.engine.begin() as db:  # someone with the database gives another step that allowance
        insert = text("INSERT INTO audit_held_ticket (step_id, run_id, ticket) VALUES (:step, :run, :ticket)")
        db.execute(insert, {"step": target.step_id, "run": target.run_id, "ticket": ticket})
    with pytest.raises(NoValidTicket):
        await checks.decide_and_act(check(node, run), attempt=2, writes=True)
    assert paid == ["r/pay/1"]  # the other step's tool never acted
    with pytest.raises(NoValidTicket):  # nor does the run's seal write a record from the copy
        await checks.seal([ActedStep(call=check(node, run).call, ticket=None, acted=None)])
    await checks.drain()
    assert [r.step_id for r in audit.records()] == ["r/pay/1"]
    assert audit.verify() is None


async def test_two_attempts_racing_act_on_one_held_ticket(audit: AuditLog, database_url: str) -> None:
    """Two workers run two attempts of the step at once (a timed-out one still running): each
    decides on a different read of the order, yet one ticket is held and both act on it."""
    one, two = gate(audit), gate(AuditLog(database_url))
    first, second = await asyncio.gather(
        one.decide_and_act(check("pay"), attempt=1, writes=True),
        two.decide_and_act(check("pay"), attempt=2, writes=True),
    )
    assert first.reply is not None and first.reply.error is None
    assert second.reply is not None and second.reply.error is None
    assert first.decision.ticket is not None and second.decision.ticket is not None
    assert first.decision.ticket.signature == second.decision.ticket.signature
    [(step, ticket)] = held_rows(audit)
    assert step == "r/pay/1" and ticket == first.decision.ticket.model_dump_json()
    assert paid == ["r/pay/1", "r/pay/1"]
    await asyncio.gather(one.drain(), two.drain())
    assert [(r.step_id, r.kind) for r in audit.records()] == [("r/pay/1", "effect")]
    assert audit.verify() is None


async def test_hold_returns_the_first_ticket_held_for_a_step(audit: AuditLog) -> None:
    """:meth:`AuditLog.hold` on a step already held (the IntegrityError path) keeps the first."""
    assert audit.hold("r", "r/pay/1", '{"first": 1}') == '{"first": 1}'
    assert audit.hold("r", "r/pay/1", '{"second": 2}') == '{"first": 1}'
    assert AuditLog(str(audit.engine.url.render_as_string(hide_password=False))).held(["r/pay/1", "r/none/1"]) == {
        "r/pay/1": '{"first": 1}'
    }
    assert audit.held([]) == {}
    assert held_rows(audit) == [("r/pay/1", '{"first": 1}')]


async def test_a_retry_deciding_while_its_first_attempt_holds_and_pays_does_not_refuse(audit: AuditLog) -> None:
    one, two = gate(audit, LEFT), gate(AuditLog(str(audit.engine.url.render_as_string(hide_password=False))), LEFT)
    first: list[DecidedStep] = []

    async def first_attempt_holds_and_pays() -> None:  # attempt 1, on a worker that was timed out
        first.append(await one.decide_and_act(check("pay"), attempt=1, writes=True))

    race["during_read"] = first_attempt_holds_and_pays()  # runs inside the retry's read of the order
    again = await two.decide_and_act(check("pay"), attempt=2, writes=True)
    assert len(first) == 1  # attempt 1 held its ticket and paid while the retry read the order
    await asyncio.gather(one.drain(), two.drain())
    kinds = sorted((r.step_id, r.kind, r.decision) for r in audit.records())
    assert ("r/pay/1", "decision", "deny") not in kinds  # the retry did not refuse what attempt 1 paid
    assert again.decision.outcome == "allow" and again.decision.ticket == first[0].decision.ticket
    assert paid == ["r/pay/1", "r/pay/1"]  # it acted on attempt 1's ticket, under the same step key
