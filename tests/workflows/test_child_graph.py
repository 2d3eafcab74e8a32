"""A business's own workflow calls graphs: its own activity, a signal wait and two graphs,
each graph a child run with an ID derived from the parent's."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from chamberlain.agents import GraphSpec
    from chamberlain.workflows import ChamberlainPlugin, DevServer, GraphWorkflow, Principal, RunResult, run_graph
    from tests.conftest import run_id
    from tests.support import toolbox
    from tests.workflows.test_plugin import CUSTOMER, answer_graph, gate_for, greeting_models


class ReturnCase(BaseModel):
    """A graph is data: the workflow receives it (or imports it from a passed-through module)."""

    message: str
    customer: Principal
    answer: GraphSpec
    followup: GraphSpec
    followup_id: str = "followup"


class CaseOutcome(BaseModel):
    first: RunResult
    reserved: str
    confirmed_by: str
    second: RunResult


@activity.defn
async def reserve_replacement(order_id: str) -> str:
    return f"replacement for {order_id} reserved"


@workflow.defn
class ReturnCaseWorkflow:
    def __init__(self) -> None:
        self._confirmed_by: str | None = None

    @workflow.signal
    def confirm(self, agent: str) -> None:
        self._confirmed_by = agent

    @workflow.run
    async def run(self, case: ReturnCase) -> CaseOutcome:
        first = await run_graph(case.answer, {"message": case.message}, principal=case.customer)
        reserved = await workflow.execute_activity(
            reserve_replacement, first.output["order_id"], start_to_close_timeout=timedelta(seconds=10)
        )
        await workflow.wait_condition(lambda: self._confirmed_by is not None)
        assert self._confirmed_by is not None
        followup = f"{first.output['reply']}, {reserved}"
        second = await run_graph(case.followup, {"message": followup}, principal=case.customer, id=case.followup_id)
        return CaseOutcome(first=first, reserved=reserved, confirmed_by=self._confirmed_by, second=second)


async def child_result(client: Client, workflow_id: str) -> RunResult:
    """The result of a child run, once its parent has started it."""
    for _ in range(200):
        try:
            return await client.get_workflow_handle_for(GraphWorkflow.run, workflow_id).result()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            await asyncio.sleep(0.05)
    raise AssertionError(f"{workflow_id} never started")


def case(followup_id: str = "followup") -> ReturnCase:
    return ReturnCase(
        message="王小明, A1042 arrived broken",
        customer=CUSTOMER,
        answer=answer_graph(),
        followup=answer_graph(),
        followup_id=followup_id,
    )


async def test_a_business_workflow_chains_its_activity_a_signal_and_two_graphs(
    dev_server: DevServer, tmp_path: Path, task_queue: str
) -> None:
    tools = toolbox.tools()
    plugin = ChamberlainPlugin(models=greeting_models(), tools=tools, gate=gate_for(tools, tmp_path))
    own = await Client.connect(dev_server.address, plugins=[plugin])  # as a business's worker process does
    parent = run_id()
    async with Worker(own, task_queue=task_queue, workflows=[ReturnCaseWorkflow], activities=[reserve_replacement]):
        handle = await own.start_workflow(ReturnCaseWorkflow.run, case(), id=parent, task_queue=task_queue)
        first = await child_result(own, f"{parent}/answer")
        assert first.output["order_id"] == "A1042"  # the parent now waits for the signal
        with pytest.raises(RPCError, match="not found"):  # no follow-up graph before the signal
            await own.get_workflow_handle(f"{parent}/followup").describe()
        await handle.signal(ReturnCaseWorkflow.confirm, "agent-7")
        outcome = await handle.result()
    assert outcome.reserved == "replacement for A1042 reserved" and outcome.confirmed_by == "agent-7"
    assert outcome.first.output["reply"] == "您好 王小明, we are looking at A1042"
    assert outcome.second.output["reply"].startswith("您好 您好 王小明")
    assert outcome.first.principal == outcome.second.principal == CUSTOMER
    for child in ("answer", "followup"):
        described = await own.get_workflow_handle(f"{parent}/{child}").describe()
        assert described.parent_id == parent and described.workflow_type == "chamberlain.graph"


async def test_one_graph_run_id_is_used_once(dev_server: DevServer, tmp_path: Path, task_queue: str) -> None:
    """A second run under the same ID would share the first one's idempotency keys (a refund
    taken for another): the parent fails with a clear reason instead."""
    tools = toolbox.tools()
    plugin = ChamberlainPlugin(models=greeting_models(), tools=tools, gate=gate_for(tools, tmp_path))
    own = await Client.connect(dev_server.address, plugins=[plugin])  # as a business's worker process does
    parent = run_id()
    async with Worker(own, task_queue=task_queue, workflows=[ReturnCaseWorkflow], activities=[reserve_replacement]):
        handle = await own.start_workflow(ReturnCaseWorkflow.run, case("answer"), id=parent, task_queue=task_queue)
        await child_result(own, f"{parent}/answer")
        await handle.signal(ReturnCaseWorkflow.confirm, "agent-7")
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "DuplicateGraphRun"
    assert f"a graph run with ID {parent}/answer already exists" in cause.message
