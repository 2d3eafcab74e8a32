"""What an operator does to a run — cancel it, retry a failed run from its failed step, or run
a closed one again with edited input as a new, linked run — each written to the audit log
first (kind ``operation``): no audit log, no operation.

Retry is Temporal's reset: the run's history is kept up to the last workflow task completed
before the failed step's activity was scheduled, and the workflow goes on from there, so the
steps before the failure are not run again (their results are in the kept history) and the
failed step runs anew under its own, unchanged idempotency key.
"""

from __future__ import annotations

import uuid
from typing import Any

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from chamberlain.server._runs import RunNotFound, _request_of
from chamberlain.workflows import AuditLog, GraphWorkflow, Principal
from chamberlain.workflows._audit import AuditEntry

FAILURES = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
}


class OperationRefused(Exception):
    """The run is not in a state this operation applies to; the message says why."""


def audit_operation(audit_url: str, run_id: str, operator: Principal, action: str, detail: str = "") -> None:
    """Record that ``operator`` asked for ``action`` on the run, before it is carried out."""
    entry = AuditEntry(
        run_id=run_id,
        step_id=f"{run_id}/operation/{uuid.uuid4().hex}",
        kind="operation",
        principal=operator.id,
        action=action,
        resource=f'Run::"{run_id}"',
        args={"detail": detail},
        decision="requested",
    )
    AuditLog(audit_url).append(entry)


async def cancel_run(client: Client, run_id: str, operator: Principal, audit_url: str) -> None:
    handle = client.get_workflow_handle(run_id)
    status = (await _describe(client, run_id)).status
    if status != WorkflowExecutionStatus.RUNNING:
        raise OperationRefused(f"run {run_id} is not running ({_name(status)}): nothing to cancel")
    audit_operation(audit_url, run_id, operator, "cancel")
    await handle.cancel()


async def retry_from_failure(client: Client, run_id: str, operator: Principal, audit_url: str) -> str:
    """Reset the failed run to just before its failed step; returns the new Temporal run ID."""
    described = await _describe(client, run_id)
    if described.status != WorkflowExecutionStatus.FAILED:
        raise OperationRefused(f"run {run_id} has not failed ({_name(described.status)}): only a failed run retries")
    reset_to = await reset_point(client, run_id)
    audit_operation(audit_url, run_id, operator, "retry", f"reset to event {reset_to}")
    response = await client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=run_id, run_id=described.run_id),
            reason=f"retry from the failed step, by {operator.id} in the console",
            workflow_task_finish_event_id=reset_to,
            request_id=str(uuid.uuid4()),
        )
    )
    return response.run_id


async def reset_point(client: Client, run_id: str) -> int:
    """The last completed workflow task before the failed step's activity was scheduled: the
    activity that failed, or — when the workflow failed the run on a step's reported error —
    the last activity scheduled before the failure. A read run as a local activity in the same
    workflow task as the failed step is recorded with that task, so it is read again (reads
    are safe to repeat); writes are activities of their own and are not run again."""
    last_task, last_step = 0, 0
    scheduled_task: dict[int, int] = {}
    async for event in client.get_workflow_handle(run_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            last_task = event.event_id
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled_task[event.event_id] = last_step = last_task
        elif event.event_type in FAILURES:
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
                point = scheduled_task.get(event.activity_task_failed_event_attributes.scheduled_event_id, 0)
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
                point = scheduled_task.get(event.activity_task_timed_out_event_attributes.scheduled_event_id, 0)
            else:
                point = last_step
            if point:
                return point
    raise OperationRefused(f"run {run_id}: no completed workflow task before its failure to go back to")


async def _describe(client: Client, run_id: str) -> WorkflowExecutionDescription:
    try:
        return await client.get_workflow_handle(run_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise RunNotFound(f"no run {run_id}") from exc
        raise


def _name(status: WorkflowExecutionStatus | None) -> str:
    return status.name.lower() if status else "unknown"


async def rerun(client: Client, run_id: str, operator: Principal, audit_url: str, changes: dict[str, Any]) -> str:
    """Start the closed run again as a new run, its input with ``changes`` (state fields)
    applied, for the same principal (never the operator: a re-run acts for whom the first did).
    Audited on both runs; returns the new run's ID."""
    described = await _describe(client, run_id)
    if described.status == WorkflowExecutionStatus.RUNNING:
        raise OperationRefused(f"run {run_id} is still running: cancel it or wait before running it again")
    request = await _request_of(client, run_id)
    if request is None or request.resume is not None:
        raise OperationRefused(f"run {run_id}: its first input is not in this history (continued as new)")
    unknown = sorted(set(changes) - set(request.graph.state))
    if unknown:
        fields = ", ".join(sorted(request.graph.state))
        raise OperationRefused(f"input: {', '.join(unknown)} not in graph {request.graph.name}'s state ({fields})")
    new_id = f"{run_id}.rerun-{uuid.uuid4().hex[:8]}"  # no "/": the console addresses runs by one path segment
    changed = ", ".join(sorted(changes)) or "nothing"
    audit_operation(audit_url, run_id, operator, "rerun", f"as {new_id}; changed: {changed}")
    audit_operation(audit_url, new_id, operator, "rerun", f"of {run_id}; changed: {changed}")
    again = request.model_copy(update={"input": {**request.input, **changes}})
    await client.start_workflow(GraphWorkflow.run, again, id=new_id, task_queue=described.task_queue)
    return new_id
