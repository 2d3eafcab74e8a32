"""A write step decided in its own activity (:meth:`Gate.decide_and_act` with ``writes``): its
ticket is held — committed — before the tool acts, and a retry of the activity acts on that
ticket. Deciding again would read a resource the first attempt's effect changed: a refund
would count against itself and be refused, though it was paid."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel
from sqlalchemy import text

from chamberlain.agents._steps import StepContext, ToolCall
from chamberlain.tools import Effect, Resource, ToolContext, ToolRegistry, tool
from chamberlain.workflows import AuditLog, Gate, PolicyEngine
from chamberlain.workflows._gate import ActedStep, GateCheck, NoValidTicket
from tests.support.workers import TEST_SECRET

# Refund no more than is left to refund: what the shipped refund limits also count.
POLICY = """
@id("refund-what-is-left")
permit (principal, action, resource) when { context.amount_cents <= context.refundable_cents };
"""
TOTAL = 100.0
paid: list[str] = []  # the steps the refund executed for, in order


class Refund(BaseModel):
    order_id: str
    amount: float


def order(args: Refund) -> Resource:
    """The order as the backend reports it now: what it has refunded so far."""
    return Resource("Order", args.order_id, {"amount": args.amount, "total": TOTAL, "refunded": 80.0 * len(paid)})


@tool("test.refund", effect=Effect.WRITE, action="erp.refund.create", resource=order)
async def refund(args: Refund, ctx: ToolContext) -> Refund:
    paid.append(ctx.step_id)
    return args


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    paid.clear()
    return AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}")


def gate(audit: AuditLog) -> Gate:
    return Gate(PolicyEngine([POLICY]), audit, ToolRegistry([refund]), TEST_SECRET)


def check(node: str) -> GateCheck:
    call = ToolCall(
        step=StepContext(run_id="r", node=node, visit=1), tool="test.refund", args={"order_id": "A1", "amount": 80.0}
    )
    return GateCheck(call=call, principal=None, grant=None, write_ahead=True)


async def test_a_retry_acts_on_the_ticket_its_first_attempt_held_not_on_a_new_decision(audit: AuditLog) -> None:
    checks = gate(audit)
    first = await checks.decide_and_act(check("pay"), attempt=1, writes=True)
    assert first.reply is not None and first.reply.error is None and first.decision.ticket is not None
    assert (await checks.check(check("later"))).outcome == "deny"  # decided now, the paid refund counts against itself

    again = await checks.decide_and_act(check("pay"), attempt=2, writes=True)  # the worker died before reporting
    assert again.reply is not None and again.reply.error is None
    assert again.decision.ticket == first.decision.ticket  # the allowance the effect was given, not a refusal
    assert paid == ["r/pay/1", "r/pay/1"]  # the tool ran again (a real one is idempotent by its step's key)
    await checks.drain()
    records = sorted((r.step_id, r.kind, r.decision) for r in audit.records())
    assert records == [("r/later/1", "decision", "deny"), ("r/pay/1", "effect", "allow")]  # one for the step


async def test_a_held_ticket_altered_in_the_database_is_refused(audit: AuditLog) -> None:
    checks = gate(audit)
    await checks.decide_and_act(check("pay"), attempt=1, writes=True)
    with audit.engine.begin() as db:  # someone with the database raises the amount allowed
        bigger = text("UPDATE audit_held_ticket SET ticket = replace(ticket, :was, :now)")
        db.execute(bigger, {"was": '"amount":80.0', "now": '"amount":800.0'})
    with pytest.raises(NoValidTicket):
        await checks.decide_and_act(check("pay"), attempt=2, writes=True)
    assert paid == ["r/pay/1"]


async def test_a_retry_whose_first_attempt_held_nothing_decides_afresh(audit: AuditLog) -> None:
    checks = gate(audit)
    await checks.decide_and_act(check("pay"), attempt=1, writes=True)
    again = await checks.decide_and_act(check("pay-again"), attempt=2, writes=True)  # no ticket held for this step
    assert again.decision.outcome == "deny" and again.reply is None
    assert paid == ["r/pay/1"]


async def test_the_seal_finds_the_held_ticket_of_a_step_whose_activity_failed(audit: AuditLog) -> None:
    """The run knows of the step only that its activity failed (no ticket came back); the
    worker that held the ticket and acted died before its record committed."""
    crashed = gate(audit)
    crashed.commits.behind = 3600  # its queued record never commits: as if the process died
    await crashed.decide_and_act(check("pay"), attempt=1, writes=True)
    assert list(audit.records()) == []

    survivor = gate(AuditLog(str(audit.engine.url)))
    failed = [ActedStep(call=check(node).call, ticket=None, acted=None) for node in ("pay", "never-held")]
    assert await survivor.seal(failed) == 1
    assert audit.held(["r/pay/1"]) == {}  # released once its record is committed
    assert await survivor.seal(failed) == 0  # sealed twice (a replay): still one record
    records = [(r.step_id, r.kind, r.decision, r.amount) for r in survivor.audit.records()]
    assert records == [("r/pay/1", "decision", "allow", 80.0)]  # allowed; whether it acted, nobody knows
