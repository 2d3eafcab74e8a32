"""The approvals API: list what waits for a decision, and decide — as an authenticated user.

Deciding goes through the workflow's ``decide`` update, whose validator is the single
place that enforces roles, four-eyes and "one decision per step"; a refused decision is
answered 403 with the validator's reason and never reaches history.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from chamberlain.agents.labels import redact
from chamberlain.server.auth import CurrentUser
from chamberlain.server.temporal import TemporalConnection
from chamberlain.workflows.graph_workflow import GraphWorkflow
from chamberlain.workflows.runs import decide
from chamberlain.workflows.types import Decision, PendingApproval, Principal

PENDING_QUERY = 'ChamberlainApproval = "pending" AND ExecutionStatus = "Running"'


class DecisionBody(BaseModel):
    step_id: str
    outcome: Literal["approve", "reject", "request_changes"]
    reason: str = ""
    values: dict[str, Any] | None = None


class PendingItem(PendingApproval):
    """A pending approval as one viewer may see it: labelled values beyond their clearance
    redacted, the labelled values themselves never sent."""

    run_id: str
    sensitive: dict[str, list[str]] = Field({}, exclude=True)

    @classmethod
    def for_viewer(cls, run_id: str, pending: PendingApproval, viewer: Principal) -> PendingItem:
        ask = redact(pending.ask, pending.sensitive, viewer.clearance)
        return cls(run_id=run_id, **pending.model_dump(exclude={"ask", "sensitive"}), ask=ask)


def approvals_router(temporal: TemporalConnection) -> APIRouter:
    router = APIRouter(prefix="/api/approvals")

    @router.get("")
    async def pending(user: CurrentUser) -> list[PendingItem]:
        """Approvals waiting for someone, across runs (from the visibility store)."""
        client = await temporal.client()
        found = []
        async for execution in client.list_workflows(PENDING_QUERY):
            handle = client.get_workflow_handle_for(GraphWorkflow.run, execution.id)
            waiting = (await handle.query(GraphWorkflow.progress)).pending_approval
            if waiting is not None:
                found.append(PendingItem.for_viewer(execution.id, waiting, user))
        return found

    @router.post("/{run_id}")
    async def decide_approval(run_id: str, body: DecisionBody, user: CurrentUser) -> dict[str, str]:
        client = await temporal.client()
        handle = client.get_workflow_handle_for(GraphWorkflow.run, run_id)
        decision = Decision(
            step_id=body.step_id, outcome=body.outcome, approver=user, reason=body.reason, values=body.values
        )
        try:
            outcome = await decide(handle, decision)
        except WorkflowUpdateFailedError as exc:
            raise HTTPException(403, str(exc.cause)) from exc
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise HTTPException(404, f"no run {run_id} waiting for a decision") from exc
            raise
        return {"run_id": run_id, "step_id": body.step_id, "outcome": outcome, "approver": user.id}

    return router
