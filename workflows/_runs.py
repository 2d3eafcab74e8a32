"""Graph runs, started from a client or from inside a business's own workflow.

From a client (a starter script, the HTTP server): :func:`start_run` and :func:`execute_run`,
then :func:`progress` and :func:`decide` on the handle.

From a workflow: :func:`run_graph` runs a graph as a child workflow and returns its
:class:`RunResult`, so a business's ``@workflow.defn`` chains its own activities, signals,
timers and any number of graphs.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from chamberlain.agents._spec import GraphSpec
from chamberlain.agents._steps import ApprovalAnswer
from chamberlain.workflows._graph_workflow import GraphWorkflow
from chamberlain.workflows._types import Principal, RunProgress, RunRequest, RunResult
from chamberlain.workflows._worker import TASK_QUEUE


async def start_run(
    client: Client,
    graph: GraphSpec,
    values: dict[str, Any],
    *,
    run_id: str,
    principal: Principal | None = None,
    task_queue: str = TASK_QUEUE,
    steps_per_segment: int = 500,
) -> WorkflowHandle[GraphWorkflow, RunResult]:
    """Start a durable run of ``graph``; ``run_id`` becomes the workflow ID (and step IDs' prefix)."""
    request = RunRequest(graph=graph, input=values, principal=principal, steps_per_segment=steps_per_segment)
    return await client.start_workflow(GraphWorkflow.run, request, id=run_id, task_queue=task_queue)


async def execute_run(client: Client, graph: GraphSpec, values: dict[str, Any], **options: Any) -> RunResult:
    """Start a run and wait for its result (the client-side twin of ``execute_workflow``)."""
    handle = await start_run(client, graph, values, **options)
    return await handle.result()


async def progress(handle: WorkflowHandle[GraphWorkflow, RunResult]) -> RunProgress:
    return await handle.query(GraphWorkflow.progress)


async def decide(handle: WorkflowHandle[GraphWorkflow, RunResult], decision: ApprovalAnswer) -> str:
    """Send an approval decision; the workflow's validator refuses one that may not be taken."""
    return await handle.execute_update(GraphWorkflow.decide, decision)  # type: ignore[arg-type]  # async update


async def run_graph(
    graph: GraphSpec,
    values: dict[str, Any],
    *,
    principal: Principal | None,
    id: str | None = None,
    task_queue: str | None = None,
    execution_timeout: timedelta | None = None,
) -> RunResult:
    """Run ``graph`` on ``values`` for ``principal`` from inside a workflow, and return its result.

    Call it from any ``@workflow.defn`` whose worker has :class:`ChamberlainPlugin` (import
    it inside ``workflow.unsafe.imports_passed_through()``, as any non-workflow code)::

        @workflow.defn
        class OrderWorkflow:
            @workflow.run
            async def run(self, order: Order) -> str:
                triage = await run_graph(TRIAGE, {"message": order.note}, principal=order.customer)
                await workflow.execute_activity(reserve_stock, order, start_to_close_timeout=...)
                refund = await run_graph(REFUND, triage.output, principal=order.customer, id="refund")
                ...

    The graph runs as a **child workflow** of :class:`GraphWorkflow`, not inline in the
    caller, because then it is exactly the run a client would start: the same gate, audit,
    approvals (the approvals API and console find it by its own ID), progress query and
    continue-as-new; its steps fill its own history, not the caller's 51,200-event budget;
    and its ID namespaces its step IDs, from which tool writes take their idempotency keys.

    The child's ID is ``<this workflow's ID>/<id>`` (``id`` defaults to the graph's name), so
    it is the same on every replay. Two runs with one ID would share idempotency keys — a
    second refund would be taken for the first — so an ID is used once: call the same graph
    twice with different ``id``\\ s. It runs on this workflow's task queue unless
    ``task_queue`` names another. A graph that fails raises ``ChildWorkflowError`` here; a
    graph whose approval was rejected returns ``status="rejected"``.
    """
    info = workflow.info()
    child_id = f"{info.workflow_id}/{id or graph.name}"
    request = RunRequest(graph=graph, input=values, principal=principal)
    try:
        return await workflow.execute_child_workflow(
            GraphWorkflow.run,
            request,
            id=child_id,
            task_queue=task_queue or info.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            execution_timeout=execution_timeout,
        )
    except WorkflowAlreadyStartedError as exc:
        raise ApplicationError(
            f"a graph run with ID {child_id} already exists: give each run_graph call in a workflow its own id=",
            type="DuplicateGraphRun",
            non_retryable=True,
        ) from exc
