"""Starting and following graph runs from a client."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client, WorkflowHandle

from chamberlain.agents.spec import GraphSpec
from chamberlain.workflows.graph_workflow import GraphWorkflow
from chamberlain.workflows.types import Decision, Principal, RunProgress, RunRequest, RunResult
from chamberlain.workflows.worker import TASK_QUEUE


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


async def run_graph(client: Client, graph: GraphSpec, values: dict[str, Any], **options: Any) -> RunResult:
    """Start a run and wait for its result."""
    handle = await start_run(client, graph, values, **options)
    return await handle.result()


async def progress(handle: WorkflowHandle[GraphWorkflow, RunResult]) -> RunProgress:
    return await handle.query(GraphWorkflow.progress)


async def decide(handle: WorkflowHandle[GraphWorkflow, RunResult], decision: Decision) -> str:
    """Send an approval decision; the workflow's validator refuses one that may not be taken."""
    return await handle.execute_update(GraphWorkflow.decide, decision)  # type: ignore[arg-type]  # async update
