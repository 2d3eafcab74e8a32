"""Parallel map: a graph per item of a list, at most ``concurrency`` at once, results in order,
each branch a child workflow with its own step IDs — so several approvals can be pending at
once, each decided on its own branch and routed nowhere else."""

from __future__ import annotations

import asyncio
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.service import RPCError

from chamberlain.agents import GraphSpec, ScriptedChatModel
from chamberlain.workflows import ApprovalAnswer, AuditLog, GraphWorkflow, PendingApproval, decide, progress, start_run
from tests.agents.test_agent_node import CUSTOMER, MANAGER
from tests.conftest import run_id
from tests.support import toolbox
from tests.workflows.test_agent_node import worker

BIG = {6: 80.0, 15: 90.0}  # over the policy's 50: these two branches wait for a manager
ITEMS = [{"order_id": f"M{i}", "amount": BIG.get(i, 10.0)} for i in range(1, 21)]
REFUND_ONE = {
    "name": "refund-one",
    "grant": ["erp.refund.create"],
    "state": {"order_id": {}, "amount": {"type": "float"}, "refund_id": {}, "error": {}},
    "start": "refund",
    "nodes": {
        "refund": {
            "type": "tool",
            "tool": "erp.refund",
            "args": {"order_id": "order_id", "amount": "amount"},
            "output": {"refund_id": "result.refund_id", "amount": "result.amount"},
            "on_error": "refused",
            "error": "error",
            "next": "done",
        },
        "refused": {"type": "end"},
        "done": {"type": "end"},
    },
}
FAN_OUT = GraphSpec.model_validate(
    {
        "name": "fan-out",
        "grant": ["erp.refund.create"],
        "state": {"items": {"type": "list"}, "results": {"type": "list"}},
        "start": "fan",
        "graphs": {"refund_one": REFUND_ONE},
        "nodes": {
            "fan": {
                "type": "map",
                "over": "items",
                "graph": "refund_one",
                "input": {"order_id": "item.order_id", "amount": "item.amount"},
                "write": "results",
                "concurrency": 4,
                "next": "done",
            },
            "done": {"type": "end"},
        },
    }
)


async def both_pending(client: Client, rid: str) -> dict[int, PendingApproval]:
    handles = {i: client.get_workflow_handle_for(GraphWorkflow.run, f"{rid}/fan/1/{i}") for i in BIG}
    for _ in range(600):
        pending = {}
        for i, handle in handles.items():
            try:
                if found := (await progress(handle)).pending_approval:
                    pending[i] = found
            except (RPCError, WorkflowQueryFailedError):  # the branch has not started yet
                pass
        if len(pending) == len(BIG):
            return pending
        await asyncio.sleep(0.05)
    raise AssertionError("the two approvals were never pending at once")


async def test_a_map_over_20_items_with_two_approvals_pending_routes_each_to_its_branch(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    audit, rid = AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}"), run_id()
    async with worker(client, task_queue, ScriptedChatModel(replies=["unused"]), audit):
        handle = await start_run(
            client, FAN_OUT, {"items": ITEMS}, run_id=rid, principal=CUSTOMER, task_queue=task_queue
        )
        pending = await both_pending(client, rid)
        assert {i: p.step_id for i, p in pending.items()} == {i: f"{rid}/fan/1/{i}/refund/1" for i in BIG}
        six = client.get_workflow_handle_for(GraphWorkflow.run, f"{rid}/fan/1/6")
        fifteen = client.get_workflow_handle_for(GraphWorkflow.run, f"{rid}/fan/1/15")
        edit = {"args": {"order_id": "M15", "amount": 60.0}}
        await decide(
            fifteen, ApprovalAnswer(step_id=pending[15].step_id, outcome="approve", approver=MANAGER, values=edit)
        )
        no = ApprovalAnswer(step_id=pending[6].step_id, outcome="reject", approver=MANAGER, reason="M6 已退过")
        await decide(six, no)
        result = await handle.result()
        events = [e.event_type async for e in handle.fetch_history_events()]
    results = result.output["results"]
    assert [r["output"]["order_id"] for r in results] == [item["order_id"] for item in ITEMS]  # in order
    assert [r["output"]["amount"] for r in results] == [10.0] * 5 + [80.0] + [10.0] * 8 + [60.0] + [10.0] * 5
    assert (
        results[5]["output"]["refund_id"] is None and "not approved (mei: M6 已退过)" in results[5]["output"]["error"]
    )
    assert results[14]["output"]["refund_id"] == "R-M15"
    refunds = sorted(step for _, step in toolbox.effects("refund"))
    assert refunds == sorted(f"{rid}/fan/1/{i}/refund/1" for i in range(1, 21) if i != 6)  # once each, not M6
    running, most = 0, 0
    for kind in events:  # never more than `concurrency` branches started and not yet finished
        if kind == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            running += 1
        elif kind == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED:
            running -= 1
        most = max(most, running)
    assert most == 4
