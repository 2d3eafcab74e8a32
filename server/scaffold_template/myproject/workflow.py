"""myproject's own durable workflow: a refund case that runs the refund graph, then a step of
the business's own (here: a note to the customer), each recorded in Temporal's history.

A graph is one call, :func:`run_graph`: it runs as a child workflow behind the permission gate,
with its own approvals, audit and idempotency keys.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from chamberlain.agents import GraphSpec
    from chamberlain.workflows import Principal, RunResult, run_graph

    from myproject.events import RefundAsked


class RefundCase(BaseModel):
    event: RefundAsked
    customer: Principal
    graph: GraphSpec  # a graph is data: it travels in the workflow's input


class CaseOutcome(BaseModel):
    run: RunResult
    note: str


@activity.defn
async def note_to_customer(text: str) -> str:
    """Your own side effect (an email, a ticket comment); here it only formats the note."""
    return f"Dear customer, {text}"


@workflow.defn
class RefundCaseWorkflow:
    @workflow.run
    async def run(self, case: RefundCase) -> CaseOutcome:
        values = {"message": case.event.message, "order_id": case.event.order_id}
        result = await run_graph(case.graph, values, principal=case.customer, id="refund")
        text = str(result.output.get("reply") or result.output.get("error") or "we could not act on your request")
        note = await workflow.execute_activity(note_to_customer, text, start_to_close_timeout=timedelta(seconds=30))
        return CaseOutcome(run=result, note=note)
