"""Returns runs for the crash tests: a seeded shop, returns the helpdesk may refund alone, the
evaluation's returns graph made patient with dead workers, and the check that every return
was authorised and refunded exactly once — in the ERP and in the audit log."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlmodel import Session, col, select
from temporalio.client import Client, WorkflowHandle

from chamberlain.agents import GraphSpec, load_graph
from chamberlain.tools import ToolContext, ToolRegistry
from chamberlain.tools._business import business_tools
from chamberlain.tools._seed import REFERENCE_DAY, seed
from chamberlain.tools.crm.embedded import EmbeddedCrm
from chamberlain.tools.erp.embedded import EmbeddedErp, rma_number
from chamberlain.tools.erp.models import Order, OrderLine, Payment, Refund, ReturnAuthorization
from chamberlain.workflows import GraphWorkflow, Principal, RunResult, start_run
from tests.support import evaluation, toolbox
from tests.support.workers import audit_log


@dataclass(frozen=True)
class Return:
    order: str
    customer: str
    amount: float


@dataclass
class Shop:
    """A seeded shop on SQLite, and what its orders looked like before the runs."""

    url: str
    erp: EmbeddedErp
    tools: ToolRegistry
    refunded: dict[str, float]
    returned: dict[str, int]

    @classmethod
    def seeded(cls, folder: Path) -> Shop:
        url = f"sqlite:///{folder / 'shop.sqlite'}"
        erp = EmbeddedErp(url)
        seed(erp, EmbeddedCrm(erp.engine), customers=80, orders=400)
        tools = business_tools(erp, EmbeddedCrm(erp.engine), labels_dir=folder / "labels", today=REFERENCE_DAY)
        return cls(url, erp, tools, refunded(erp), returned_quantities(erp))

    def graph(self) -> GraphSpec:
        return patient(load_graph(evaluation.GRAPH, tools=self.tools))

    async def small_returns(self, count: int) -> list[Return]:
        """Delivered orders whose return of one item the policy allows within the helpdesk's
        limit (no manager to wait for)."""
        with Session(self.erp.engine) as session:
            orders = session.exec(select(Order).where(Order.status == "delivered").order_by(col(Order.id))).all()
            candidates = [(o.id, o.customer_id) for o in orders]
        found: list[Return] = []
        context = ToolContext(step_id="pick/evaluate/1", idempotency_key="pick")
        for order_id, customer in candidates:
            args = {"order_id": order_id, "lines": [{"line_no": 1, "quantity": 1}], "condition": "unopened"}
            decision = await self.tools.invoke("returns.evaluate", args, context)
            if decision["eligible"] and decision["refunded"] + decision["refund_amount"] <= 200:
                found.append(Return(order_id, customer, decision["refund_amount"]))
                if len(found) == count:
                    return found
        raise AssertionError(f"the seed has only {len(found)} small returns, not {count}")

    async def check_each_return_once(self, runs: dict[str, Return], outcomes: list[RunResult]) -> None:
        """Every run reached ``done`` with its own RMA and refund; the ERP holds exactly one of
        each per run and moved each order's money and quantity once; the audit chain verifies,
        with one effect record per effect, naming exactly those RMAs and refunds."""
        assert [(o.status, o.end) for o in outcomes] == [("completed", "done")] * len(runs), [
            o.output for o in outcomes
        ]
        with Session(self.erp.engine) as session:
            rmas = {r.idempotency_key: r for r in session.exec(select(ReturnAuthorization)).all()}
            refunds = {r.idempotency_key: r for r in session.exec(select(Refund)).all()}
        assert sorted(rmas) == sorted(f"{rid}/authorize/1" for rid in runs)
        assert sorted(refunds) == sorted(f"{rid}/refund/1" for rid in runs)
        now_refunded, now_returned = refunded(self.erp), returned_quantities(self.erp)
        for outcome, (rid, case) in zip(outcomes, runs.items(), strict=True):
            rma, refund = rmas[f"{rid}/authorize/1"], refunds[f"{rid}/refund/1"]
            assert rma.order_id == refund.order_id == case.order and refund.amount == pytest.approx(case.amount)
            assert rma.id is not None and outcome.output["rma"] == rma_number(rma.id)
            assert outcome.output["refund_id"] == f"RF{refund.id:06d}"
            assert now_refunded[case.order] == pytest.approx(self.refunded[case.order] + case.amount)
            assert now_returned[case.order] == self.returned[case.order] + 1  # one item returned, once
        audit = audit_log()
        assert audit.verify() is None
        effects = [r for r in audit.records() if r.kind == "effect"]
        assert all(n == 1 for n in Counter(r.step_id for r in effects).values())
        assert sorted(r.step_id for r in effects if r.action == "returns.rma.create") == sorted(rmas)
        assert sorted(r.step_id for r in effects if r.action == "erp.refund.create") == sorted(refunds)


def patient(spec: GraphSpec) -> GraphSpec:
    """A graph whose steps give up on a dead worker after 3 s (not 60) and retry often enough
    to outlast every crash a test inflicts."""
    data = spec.model_dump(by_alias=True, mode="json")
    for node in data["nodes"].values():
        if node["type"] in ("model", "tool"):
            node["timeout"] = "3s"
            node["retry"] = {"max_attempts": 20, "initial_interval": "200ms", "max_interval": "1s"}
    return GraphSpec.model_validate(data)


async def start_return(
    client: Client, spec: GraphSpec, rid: str, case: Return, task_queue: str
) -> WorkflowHandle[GraphWorkflow, RunResult]:
    """A return as the helpdesk's webhook starts it: for the customer, in the customer's words."""
    principal = Principal(id=f"helpdesk:{case.customer}", kind="service", roles=["helpdesk"], customer=case.customer)
    message = f"Please take back order {case.order}, the parcel is still unopened"
    values = {"message": message, "customer_id": case.customer}
    return await start_run(client, spec, values, run_id=rid, principal=principal, task_queue=task_queue)


def ledger_writes() -> list[tuple[str, str]]:
    """The RMAs and refunds the workers' ERP committed or found committed, one entry per call."""
    return toolbox.effects("rma") + toolbox.effects("refund")


def refunded(erp: EmbeddedErp) -> dict[str, float]:
    """What each order had refunded, over its payments."""
    totals: dict[str, float] = {}
    with Session(erp.engine) as session:
        for payment in session.exec(select(Payment)).all():
            totals[payment.order_id] = totals.get(payment.order_id, 0.0) + payment.refunded
    return totals


def returned_quantities(erp: EmbeddedErp) -> dict[str, int]:
    """The returned quantity of each order's first line."""
    with Session(erp.engine) as session:
        lines = session.exec(select(OrderLine).where(col(OrderLine.line_no) == 1)).all()
    return {line.order_id: line.returned_quantity for line in lines}
