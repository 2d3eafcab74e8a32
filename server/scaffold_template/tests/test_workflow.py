"""End to end on the embedded Temporal server: myproject's own workflow runs the refund graph
as a child run behind the gate, then its own activity; a second delivery refunds nothing more."""

from __future__ import annotations

import uuid

from chamberlain.workflows import DevServer, Principal

from myproject import app
from myproject.events import RefundAsked
from myproject.worker import connect, worker
from myproject.workflow import RefundCase, RefundCaseWorkflow

CUSTOMER = Principal(id="helpdesk:C10001", kind="service", roles=["helpdesk"], customer="C10001")


def case(order_id: str = "A1001") -> RefundCase:
    event = RefundAsked(event_id="e1", customer_id="C10001", order_id=order_id, message="please refund, it is broken")
    return RefundCase(event=event, customer=CUSTOMER, graph=app.refund_graph())


async def test_a_refund_case_runs_durably_and_once(temporal: DevServer) -> None:
    client = await connect(temporal.address)
    queue = f"test-{uuid.uuid4().hex[:8]}"
    async with worker(client, queue):
        first = await client.execute_workflow(RefundCaseWorkflow.run, case(), id=f"case-{queue}", task_queue=queue)
        again = await client.execute_workflow(RefundCaseWorkflow.run, case(), id=f"case2-{queue}", task_queue=queue)
    assert first.run.status == "completed" and first.note == "Dear customer, Refunded 80.0 CNY"
    assert again.run.output["amount"] == 0 and again.run.output["refund_id"] is None  # nothing left to refund


async def test_another_customers_order_is_never_refunded(temporal: DevServer) -> None:
    client = await connect(temporal.address)
    queue = f"test-{uuid.uuid4().hex[:8]}"
    async with worker(client, queue):
        outcome = await client.execute_workflow(
            RefundCaseWorkflow.run, case("A1002"), id=f"case-{queue}", task_queue=queue
        )
    assert outcome.run.end == "refused" and outcome.run.output.get("refund_id") is None
    assert outcome.note == "Dear customer, forbidden by customers-only-their-own-records"
