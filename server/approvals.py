"""The approvals API: list what waits for a decision, and decide — as an authenticated user.

Who sees what: a user lists only the approvals they could decide — those whose current
approver roles (after an escalation, the escalation's) include one of the user's roles, and
that they did not request (four-eyes). Those approvers see the approval's own fields
unmasked, labelled values included — nobody decides blind; anyone else shown it (the runs
API) sees labelled values beyond their clearance as ``[label]``.

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
    """A pending approval as one viewer may see it: whole for its approvers, else labelled
    values beyond the viewer's clearance redacted; the index of labelled values never sent."""

    run_id: str
    sensitive: dict[str, list[str]] = Field({}, exclude=True)

    @classmethod
    def for_viewer(cls, run_id: str, pending: PendingApproval, viewer: Principal) -> PendingItem:
        ask = pending.ask if may_decide(viewer, pending) else redact(pending.ask, pending.sensitive, viewer.clearance)
        return cls(run_id=run_id, **pending.model_dump(exclude={"ask", "sensitive"}), ask=ask)


def may_decide(viewer: Principal, pending: PendingApproval) -> bool:
    """Whether ``viewer`` holds one of the approval's current approver roles and is not its
    requester — the rule the workflow's ``decide`` validator enforces when they decide."""
    return bool(set(viewer.roles) & set(pending.approvers)) and viewer.id != pending.requested_by


def approvals_router(temporal: TemporalConnection) -> APIRouter:
    router = APIRouter(prefix="/api/approvals")

    @router.get("")
    async def pending(user: CurrentUser) -> list[PendingItem]:
        """Approvals waiting for the caller's roles, across runs (from the visibility store)."""
        client = await temporal.client()
        found = []
        async for execution in client.list_workflows(PENDING_QUERY):
            handle = client.get_workflow_handle_for(GraphWorkflow.run, execution.id)
            waiting = (await handle.query(GraphWorkflow.progress)).pending_approval
            if waiting is not None and may_decide(user, waiting):
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
