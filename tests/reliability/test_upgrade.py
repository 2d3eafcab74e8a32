"""Upgrades with runs in flight, by patching (see docs/benchmarks.md, "Upgrades"): new code
replays old histories and honours what old code put in flight.

- Read-only tools became local activities behind ``workflow.patched("chamberlain-local-reads")``;
  the histories recorded before (tests/histories) replay on this code (test_replay.py).
- Tickets grew the decision they carry (actor, policies, attempt, read-only) under their
  signature. A tool activity scheduled by old code carries an old ticket: it must still act,
  once, and a new ticket stripped to look old must not.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chamberlain.agents import StepContext, ToolCall
from chamberlain.workflows import AuditLog
from chamberlain.workflows._gate import GateCheck, NoValidTicket, Ticket
from tests.support import toolbox
from tests.support.workers import gate_for_tests


def refund_call() -> ToolCall:
    return ToolCall(
        step=StepContext(run_id="r", node="refund", visit=1), tool="erp.refund", args={"order_id": "A1", "amount": 10.0}
    )


async def test_a_ticket_issued_before_the_upgrade_still_acts_once(tmp_path: Path) -> None:
    audit = AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    gate = gate_for_tests(toolbox.tools(), audit)
    call = refund_call()
    verdict = await gate.check(GateCheck(call=call, principal=None, grant=None))
    assert verdict.ticket is not None and verdict.resource is not None
    old = Ticket(
        resource=verdict.resource,
        principal="anonymous",
        signature=gate._sign("ticket", call, verdict.resource, "anonymous"),
    )  # as old code signed it
    reply = await gate.act(call, old, attempt=1)
    again = await gate.act(call, old, attempt=2)  # a retry on the new worker
    assert reply.error is None and again.error is None
    records = [(r.step_id, r.kind, r.decision, r.principal) for r in audit.records()]
    assert records == [("r/refund/1", "effect", "allow", "anonymous")]


async def test_a_new_ticket_cannot_pass_for_an_old_one_or_change_what_it_carries(tmp_path: Path) -> None:
    gate = gate_for_tests(toolbox.tools(), AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}"))
    call = refund_call()
    verdict = await gate.check(GateCheck(call=call, principal=None, grant=None))
    ticket = verdict.ticket
    assert ticket is not None and ticket.actor == "anonymous" and not ticket.read_only
    for change in (
        {"actor": ""},
        {"actor": "User::boss"},
        {"policies": ["made-up"]},
        {"attempt": 2},
        {"read_only": True},
    ):
        with pytest.raises(NoValidTicket):
            gate.admit(call, ticket.model_copy(update=change))
