"""Returns under a worker that keeps dying: 30 returns runs (the evaluation's returns graph: the
model reads the message, the policy tools decide, an RMA, a refund) behind the shipped policies,
while the only worker process is SIGKILLed at random moments (a fixed seed) and started again
with the deployment's shared grant key. Every run completes; the ERP holds one RMA and one
refund per run and moved each order's money once; the audit chain verifies, with one effect
record per effect. The worker's ERP lingers after each write, so kills often land between a
write and its report — the case where a retry must find the write instead of repeating it."""

from __future__ import annotations

import asyncio
import random
import secrets
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlmodel import Session, col, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from chamberlain.agents import GraphSpec, load_graph
from chamberlain.tools import ToolContext, ToolRegistry
from chamberlain.tools._business import business_tools
from chamberlain.tools._seed import REFERENCE_DAY, seed
from chamberlain.tools.crm.embedded import EmbeddedCrm
from chamberlain.tools.erp.embedded import EmbeddedErp, rma_number
from chamberlain.tools.erp.models import Order, OrderLine, Refund, ReturnAuthorization
from chamberlain.workflows import GRANT_SECRET_ENV, DevServer, Principal, RunResult, start_run
from tests.conftest import run_id
from tests.support import evaluation, toolbox
from tests.support.returns_worker import LINGER, SHOP_ENV, spawn
from tests.support.workers import audit_log

pytestmark = [pytest.mark.chaos, pytest.mark.slow]
RUNS = 30
KILLS = 6
SEED = 20261130


def patient(spec: GraphSpec) -> GraphSpec:
    """The returns graph with steps that give up on a dead worker after 3 s (not 60) and retry
    often enough to outlast every kill."""
    data = spec.model_dump(by_alias=True, mode="json")
    for node in data["nodes"].values():
        if node["type"] in ("model", "tool"):
            node["timeout"] = "3s"
            node["retry"] = {"max_attempts": 20, "initial_interval": "200ms", "max_interval": "1s"}
    return GraphSpec.model_validate(data)


async def small_returns(tools: ToolRegistry, erp: EmbeddedErp, count: int) -> list[tuple[str, str, float]]:
    """Delivered orders whose return of one item the policy allows within the helpdesk's limit
    (no manager to wait for), as (order, customer, refund)."""
    with Session(erp.engine) as session:
        orders = session.exec(select(Order).where(Order.status == "delivered").order_by(col(Order.id))).all()
        candidates = [(o.id, o.customer_id) for o in orders]
    found: list[tuple[str, str, float]] = []
    context = ToolContext(step_id="pick/evaluate/1", idempotency_key="pick")
    for order_id, customer in candidates:
        args = {"order_id": order_id, "lines": [{"line_no": 1, "quantity": 1}], "condition": "unopened"}
        decision = await tools.invoke("returns.evaluate", args, context)
        if decision["eligible"] and decision["refunded"] + decision["refund_amount"] <= 200:
            found.append((order_id, customer, decision["refund_amount"]))
            if len(found) == count:
                return found
    raise AssertionError(f"the seed has only {len(found)} small returns, not {count}")


def ledger_writes() -> list[tuple[str, str]]:
    """The RMAs and refunds the workers' ERP committed or found committed, one entry per call."""
    return toolbox.effects("rma") + toolbox.effects("refund")


def returned_quantities(erp: EmbeddedErp) -> dict[str, int]:
    """The returned quantity of each order's first line."""
    with Session(erp.engine) as session:
        lines = session.exec(select(OrderLine).where(col(OrderLine.line_no) == 1)).all()
    return {line.order_id: line.returned_quantity for line in lines}


def kill(worker: subprocess.Popen[str]) -> None:
    worker.kill()
    worker.wait()


async def retried_steps(client: Client, run_ids: list[str]) -> int:
    """How many activity attempts began again after an attempt was cut off."""
    count = 0
    for rid in run_ids:
        async for event in client.get_workflow_handle(rid).fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                count += event.activity_task_started_event_attributes.attempt > 1
    return count


async def test_thirty_returns_with_the_worker_killed_at_random_refund_and_authorise_once(
    client: Client, dev_server: DevServer, task_queue: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'shop' / 'shop.sqlite'}"
    erp = EmbeddedErp(url)
    seed(erp, EmbeddedCrm(erp.engine), customers=80, orders=400)
    tools = business_tools(erp, EmbeddedCrm(erp.engine), labels_dir=tmp_path / "labels", today=REFERENCE_DAY)
    cases = {run_id(): case for case in await small_returns(tools, erp, RUNS)}
    before = {order: (await erp.get_order(order)).refunded for order, _, _ in cases.values()}
    returned = returned_quantities(erp)
    monkeypatch.setenv(SHOP_ENV, url)
    monkeypatch.setenv(GRANT_SECRET_ENV, secrets.token_hex(32))  # every worker process gets the same key
    spec = patient(load_graph(evaluation.GRAPH, tools=tools))
    rng = random.Random(SEED)
    start_gaps = [rng.uniform(0.05, 0.3) for _ in cases]
    # where to kill: within a moment of the n-th of the 60 writes (while it lingers unreported),
    # the other runs wherever they are — points in the runs' progress, not in time, so the
    # machine's load does not move them
    kill_points = [(n, rng.uniform(0, LINGER)) for n in sorted(rng.sample(range(1, 2 * RUNS), KILLS))]
    results: list[asyncio.Task[RunResult]] = []

    async def start_all() -> None:
        """The runs arrive one by one, so the kills cut them at different steps."""
        for (rid, (order, customer, _)), gap in zip(cases.items(), start_gaps, strict=True):
            await asyncio.sleep(gap)
            principal = Principal(id=f"helpdesk:{customer}", kind="service", roles=["helpdesk"], customer=customer)
            message = f"Please take back order {order}, the parcel is still unopened"
            handle = await start_run(
                client,
                spec,
                {"message": message, "customer_id": customer},
                run_id=rid,
                principal=principal,
                task_queue=task_queue,
            )
            results.append(asyncio.ensure_future(handle.result()))

    worker = await asyncio.to_thread(spawn, dev_server.address, task_queue)
    unfinished_at_kill: list[int] = []
    began = time.monotonic()
    try:
        starting = asyncio.ensure_future(start_all())
        for writes, delay in kill_points:
            while len(set(ledger_writes())) < writes and not (starting.done() and all(r.done() for r in results)):
                await asyncio.sleep(0.02)
            await asyncio.sleep(delay)
            kill(worker)  # SIGKILL: whatever it was doing stops mid-way
            unfinished_at_kill.append(sum(not r.done() for r in results))
            worker = await asyncio.to_thread(spawn, dev_server.address, task_queue)  # as a supervisor restarts it
        await starting
        last_kill = time.monotonic() - began
        _, pending = await asyncio.wait(results, timeout=240)
        assert not pending, f"{len(pending)} runs still running after the last kill"
    finally:
        kill(worker)
    outcomes = [r.result() for r in results]
    finished = time.monotonic() - began
    assert all(unfinished_at_kill), unfinished_at_kill  # every kill cut runs short
    assert [(o.status, o.end) for o in outcomes] == [("completed", "done")] * RUNS, [o.output for o in outcomes]

    # the ERP: one RMA and one refund per run, each order's money and quantity moved once
    with Session(erp.engine) as session:
        rmas = session.exec(select(ReturnAuthorization)).all()
        refunds = session.exec(select(Refund)).all()
    returned_now = returned_quantities(erp)
    assert sorted(r.idempotency_key for r in rmas) == sorted(f"{rid}/authorize/1" for rid in cases)
    assert sorted(r.idempotency_key for r in refunds) == sorted(f"{rid}/refund/1" for rid in cases)
    rma_of = {r.idempotency_key: r for r in rmas}
    refund_of = {r.idempotency_key: r for r in refunds}
    for outcome, (rid, (order, _, amount)) in zip(outcomes, cases.items(), strict=True):
        rma, refund = rma_of[f"{rid}/authorize/1"], refund_of[f"{rid}/refund/1"]
        assert rma.order_id == refund.order_id == order and refund.amount == pytest.approx(amount)
        assert (
            rma.id is not None
            and outcome.output["rma"] == rma_number(rma.id)
            and outcome.output["refund_id"] == f"RF{refund.id:06d}"
        )
        assert (await erp.get_order(order)).refunded == pytest.approx(before[order] + amount)
        assert returned_now[order] == returned[order] + 1  # one item returned, once

    # the audit log: a valid chain, one effect record per RMA and per refund
    audit = audit_log()
    assert audit.verify() is None
    effects = [r for r in audit.records() if r.kind == "effect"]
    assert all(n == 1 for n in Counter(r.step_id for r in effects).values())
    written = {r.action: sorted(e.step_id for e in effects if e.action == r.action) for r in effects}
    assert written["returns.rma.create"] == sorted(r.idempotency_key for r in rmas)
    assert written["erp.refund.create"] == sorted(r.idempotency_key for r in refunds)

    # how the kills hit: attempts begun again, and writes whose step ran again after them
    repeated = [k for k, n in Counter(ledger_writes()).items() if n > 1]
    retried = await retried_steps(client, list(cases))
    print(
        f"{len(unfinished_at_kill)} kills (the last at {last_kill:.0f} s, all done at {finished:.0f} s), "
        f"runs in flight at each {unfinished_at_kill}, attempts begun again {retried}, writes repeated {len(repeated)}"
    )
    assert retried > 0 and repeated  # the kills cut steps off, some between a write and its report
