"""The approvals API: list what waits for a decision, and decide — as an authenticated user.

Who sees what: a user lists only the approvals they could decide — those whose current
approver roles (after an escalation, the escalation's) include one of the user's roles, and
that they did not request (four-eyes), and — when the run's principal has a tenant — only
if they belong to that tenant (an acme manager never sees nor decides a globex approval).
Those approvers see the approval's own fields unmasked, labelled values included — nobody
decides blind; anyone else shown it (the runs API) sees labelled values beyond their clearance as ``[label]``.

Deciding goes through the workflow's ``decide`` update, whose validator is the single
place that enforces roles, tenant, four-eyes and "one decision per step"; a refused decision is
answered 403 with the validator's reason and never reaches history. The API checks the tenant
first too (from the run's history), so another tenant's run answers 404 as if it did not exist.

A run whose worker cannot answer the progress query within :data:`QUERY_TIMEOUT` is left out
of the list and named in the ``Chamberlain-Unavailable`` header: one stuck run never fails the
inbox of everyone else.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel, Field
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowQueryFailedError, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from chamberlain.agents._labels import redact
from chamberlain.agents._steps import ApprovalAnswer
from chamberlain.server._auth import CurrentUser
from chamberlain.server._temporal import TemporalConnection
from chamberlain.workflows._graph_workflow import GraphWorkflow
from chamberlain.workflows._runs import decide
from chamberlain.workflows._types import PendingApproval, Principal, RunRequest, RunResult

PENDING_QUERY = 'ChamberlainApproval = "pending" AND ExecutionStatus = "Running"'
QUERY_TIMEOUT = timedelta(seconds=3)
UNAVAILABLE_HEADER = "Chamberlain-Unavailable"


class AnswerBody(BaseModel):
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
    def for_viewer(cls, run_id: str, pending: PendingApproval, viewer: Principal, tenant: str | None) -> PendingItem:
        """``tenant``: the run principal's (an approver of another tenant sees it masked)."""
        whole = may_decide(viewer, pending, tenant)
        ask = pending.ask if whole else redact(pending.ask, pending.sensitive, viewer.clearance)
        return cls(run_id=run_id, **pending.model_dump(exclude={"ask", "sensitive"}), ask=ask)


def may_decide(viewer: Principal, pending: PendingApproval, tenant: str | None) -> bool:
    """Whether ``viewer`` holds one of the approval's current approver roles, is not its
    requester and is of the run's ``tenant`` (no tenant for a run without one: a tenant's manager
    sees no run the runs API hides from them) — the rule the workflow's ``decide`` validator
    enforces when they decide."""
    return (
        bool(set(viewer.roles) & set(pending.approvers))
        and viewer.id != pending.requested_by
        and viewer.tenant == tenant
    )


async def run_tenant(client: Client, run_id: str) -> str | None:
    """The tenant of the run's principal, from the request its history started with (what the
    workflow itself checks; a query could come from an older worker)."""
    handle = client.get_workflow_handle(run_id)
    async for event in handle.fetch_history_events(page_size=1):
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            [request] = await client.data_converter.decode(payloads, [RunRequest])
            return request.principal.tenant if request.principal else None
        break
    return None


async def pending_for(client: Client, viewer: Principal) -> tuple[list[PendingItem], list[str]]:
    """The approvals ``viewer`` may decide, and the runs that could not say (no worker answered
    the progress query within :data:`QUERY_TIMEOUT`). Runs are asked concurrently."""
    ids = [execution.id async for execution in client.list_workflows(PENDING_QUERY)]

    async def one(run_id: str) -> PendingItem | None:
        handle = client.get_workflow_handle(run_id, result_type=RunResult)
        waiting = (await handle.query(GraphWorkflow.progress, rpc_timeout=QUERY_TIMEOUT)).pending_approval
        if waiting is None:
            return None
        tenant = await run_tenant(client, run_id)
        return PendingItem.for_viewer(run_id, waiting, viewer, tenant) if may_decide(viewer, waiting, tenant) else None

    answers = await asyncio.gather(*(one(run_id) for run_id in ids), return_exceptions=True)
    found, unavailable = [], []
    for run_id, answer in zip(ids, answers, strict=True):
        if isinstance(answer, (RPCError, WorkflowQueryFailedError)):
            unavailable.append(run_id)
        elif isinstance(answer, BaseException):
            raise answer
        elif answer is not None:
            found.append(answer)
    return found, unavailable


async def check_tenant(client: Client, run_id: str, user: Principal) -> None:
    """Refuses (``PermissionError``) a decision on a run of another tenant before it is sent;
    the workflow's validator refuses it too, for a caller that goes around the API."""
    if user.tenant != await run_tenant(client, run_id):
        raise PermissionError(f"no run {run_id} waiting for a decision")


def approvals_router(temporal: TemporalConnection) -> APIRouter:
    router = APIRouter(prefix="/api/approvals")

    @router.get("")
    async def pending(user: CurrentUser, response: Response) -> list[PendingItem]:
        """Approvals waiting for the caller's roles, across runs (from the visibility store);
        runs that could not answer in time are named (percent-encoded) in the ``Chamberlain-Unavailable`` header."""
        found, unavailable = await pending_for(await temporal.client(), user)
        if unavailable:
            response.headers[UNAVAILABLE_HEADER] = ",".join(quote(run_id, safe="") for run_id in unavailable)
        return found

    @router.post("/{run_id}")
    async def decide_approval(run_id: str, body: AnswerBody, user: CurrentUser) -> dict[str, str]:
        client = await temporal.client()
        handle = client.get_workflow_handle(run_id, result_type=RunResult)
        decision = ApprovalAnswer(
            step_id=body.step_id, outcome=body.outcome, approver=user, reason=body.reason, values=body.values
        )
        try:
            await check_tenant(client, run_id, user)
            outcome = await decide(handle, decision)
        except PermissionError as exc:
            raise HTTPException(404, str(exc)) from exc
        except WorkflowUpdateFailedError as exc:
            raise HTTPException(403, str(exc.cause)) from exc
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise HTTPException(404, f"no run {run_id} waiting for a decision") from exc
            raise
        return {"run_id": run_id, "step_id": body.step_id, "outcome": outcome, "approver": user.id}

    return router
