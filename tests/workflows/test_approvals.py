"""Approval steps on the time-skipping server: four-eyes, roles, escalation, restarts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from chamberlain.workflows import ApprovalAnswer, GraphWorkflow, Principal, RunResult, decide, progress, start_run
from tests.conftest import run_id
from tests.support import toolbox
from tests.support.graphs import graph
from tests.support.workers import graph_worker, wait_for_approval

ALICE = Principal(id="alice", roles=["manager"])  # requests the refund, and happens to be a manager
MARIA = Principal(id="maria", roles=["manager"])
VICTOR = Principal(id="victor", roles=["viewer"])
DIANA = Principal(id="diana", roles=["director", "manager"])


async def start(env: WorkflowEnvironment, task_queue: str) -> WorkflowHandle[GraphWorkflow, RunResult]:
    return await start_run(env.client, graph("approval"), {}, run_id=run_id(), principal=ALICE, task_queue=task_queue)


async def refused(handle: WorkflowHandle[GraphWorkflow, RunResult], decision: ApprovalAnswer) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await decide(handle, decision)
    return str(caught.value.cause)


async def test_only_an_authorized_other_person_can_approve(time_skipping: WorkflowEnvironment, task_queue: str) -> None:
    async with graph_worker(time_skipping.client, task_queue):
        handle = await start(time_skipping, task_queue)
        request = await wait_for_approval(handle)
        assert (request.ask, request.approvers, request.requested_by) == ("Refund 500.0?", ["manager"], "alice")
        as_requester = ApprovalAnswer(step_id=request.step_id, outcome="approve", approver=ALICE)
        assert "requester may not approve their own request" in await refused(handle, as_requester)
        as_viewer = ApprovalAnswer(step_id=request.step_id, outcome="approve", approver=VICTOR)
        assert "victor lacks every approver role of ['manager']" in await refused(handle, as_viewer)
        wrong_step = ApprovalAnswer(step_id="elsewhere/manager/1", outcome="approve", approver=MARIA)
        assert "has no pending approval" in await refused(handle, wrong_step)
        assert toolbox.effects("refund") == []

        assert (
            await decide(handle, ApprovalAnswer(step_id=request.step_id, outcome="approve", approver=MARIA))
            == "approve"
        )
        result = await handle.result()
        assert result.status == "completed" and result.output["refund_id"] == "R-A1"
        again = ApprovalAnswer(step_id=request.step_id, outcome="reject", approver=MARIA)
        with pytest.raises((WorkflowUpdateFailedError, RPCError)):  # the run is over: nothing to decide
            await decide(handle, again)
    history = await handle.fetch_history()
    updates = [e for e in history.events if e.HasField("workflow_execution_update_accepted_event_attributes")]
    assert len(updates) == 1  # refused decisions never reached history


async def test_rejection_ends_the_run_without_the_refund(time_skipping: WorkflowEnvironment, task_queue: str) -> None:
    async with graph_worker(time_skipping.client, task_queue):
        handle = await start(time_skipping, task_queue)
        request = await wait_for_approval(handle)
        await decide(
            handle, ApprovalAnswer(step_id=request.step_id, outcome="reject", approver=MARIA, reason="too much")
        )
        result = await handle.result()
    assert (result.status, result.end) == ("rejected", None)
    assert toolbox.effects("refund") == []


async def test_timeout_escalates_then_takes_the_default(time_skipping: WorkflowEnvironment, task_queue: str) -> None:
    async with graph_worker(time_skipping.client, task_queue):
        handle = await start(time_skipping, task_queue)
        first = await wait_for_approval(handle)
        assert (first.approvers, first.escalated) == (["manager"], False)
        await time_skipping.sleep(timedelta(minutes=61))
        escalated = await wait_for_approval(handle)
        assert (escalated.approvers, escalated.escalated) == (["director"], True)
        too_late = ApprovalAnswer(step_id=first.step_id, outcome="approve", approver=MARIA)
        assert "maria lacks every approver role of ['director']" in await refused(handle, too_late)
        result = await handle.result()  # time skips past the director's hour too
    assert result.status == "rejected"
    assert toolbox.effects("refund") == []


async def test_approval_after_a_worker_restart_resumes_the_run(client: Client, task_queue: str) -> None:
    """On the dev server: the Java time-skipping server (1.40) never hands an update to a new
    worker once the one that cached the run has gone, so this case needs the real server."""
    async with graph_worker(client, task_queue):
        handle = await start_run(client, graph("approval"), {}, run_id=run_id(), principal=ALICE, task_queue=task_queue)
        request = await wait_for_approval(handle)
    async with graph_worker(client, task_queue):  # a new worker, with no cached state
        await decide(handle, ApprovalAnswer(step_id=request.step_id, outcome="approve", approver=DIANA))
        result = await handle.result()
    assert result.status == "completed"
    assert [s for _, s in toolbox.effects("refund")] == [f"{handle.id}/refund/1"]


async def test_request_changes_is_recorded_with_the_approver(
    time_skipping: WorkflowEnvironment, task_queue: str
) -> None:
    async with graph_worker(time_skipping.client, task_queue):
        handle = await start(time_skipping, task_queue)
        request = await wait_for_approval(handle)
        ask = ApprovalAnswer(
            step_id=request.step_id, outcome="request_changes", approver=MARIA, reason="attach the photo"
        )
        await decide(handle, ask)
        result = await handle.result()
        step = (await progress(handle)).steps[0]
    assert result.status == "rejected"  # the graph declares no on_changes path: like a rejection
    assert (step.approval, step.routing) == ("request_changes", ["maria: request_changes (attach the photo)"])


async def test_escalation_reminders_are_recorded(time_skipping: WorkflowEnvironment, task_queue: str) -> None:
    async with graph_worker(time_skipping.client, task_queue):
        handle = await start(time_skipping, task_queue)
        await wait_for_approval(handle)
        await time_skipping.sleep(timedelta(minutes=61))
        escalated = await wait_for_approval(handle)
        await handle.cancel()  # a run left parked on the shared test server would stop its clock for later tests
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    assert len(escalated.reminders) == 1 and "no decision from manager within 1:00:00" in escalated.reminders[0]
