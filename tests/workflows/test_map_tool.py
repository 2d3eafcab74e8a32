"""A map over a tool under Temporal: 20 refunds, at most 3 at a time, each its own activity
``fan/1/<item>`` (its idempotency key) decided by the gate; two need a manager. In one run the
approvals take turns — each pending alone, each answer reaching only its own item (answered
only once both have asked, so a mixed-up answer would show) — while the other items go on in the
free slot."""

from __future__ import annotations

import asyncio
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from chamberlain.agents import ScriptedChatModel, parse_graph
from chamberlain.workflows import AuditLog, GraphWorkflow, PendingApproval, RunResult, decide, progress, start_run
from tests.agents.test_agent_node import CUSTOMER
from tests.agents.test_map_tool import BIG, ITEMS, YAML, answer
from tests.conftest import run_id
from tests.support import toolbox
from tests.workflows.test_agent_node import worker


async def next_pending(handle: WorkflowHandle[GraphWorkflow, RunResult], seen: set[str]) -> PendingApproval:
    for _ in range(600):
        found = (await progress(handle)).pending_approval
        if found is not None and found.step_id not in seen:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"no approval pending after {sorted(seen)}")


async def test_a_map_over_a_tool_runs_20_gated_calls_3_at_a_time_and_routes_each_approval_to_its_item(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    audit, rid = AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}"), run_id()
    async with worker(client, task_queue, ScriptedChatModel(replies=["unused"]), audit):
        handle = await start_run(
            client, parse_graph(YAML), {"items": ITEMS}, run_id=rid, principal=CUSTOMER, task_queue=task_queue
        )
        for _ in range(600):  # both big items have asked by the time the 18 others are done
            if len(toolbox.effects("refund")) == len(ITEMS) - len(BIG):
                break
            await asyncio.sleep(0.05)
        seen: set[str] = set()
        for _ in BIG:
            pending = await next_pending(handle, seen)
            seen.add(pending.step_id)
            await decide(handle, answer(pending.step_id, pending.step_id.removeprefix(f"{rid}/")))
        result = await handle.result()
        events = [e async for e in handle.fetch_history_events()]
    assert seen == {f"{rid}/fan/1/{i}" for i in BIG}  # each approval asked under its own item's step
    results = result.output["results"]
    assert [r["status"] for r in results] == ["completed"] * 5 + ["refused"] + ["completed"] * 14
    assert [r["output"]["refund_id"] for r in results if r["output"]] == [f"R-M{i}" for i in range(1, 21) if i != 6]
    assert results[14]["output"]["amount"] == 60.0 and "not approved (mei: M6 已退过)" in results[5]["error"]
    refunds = sorted(step for _, step in toolbox.effects("refund"))
    assert refunds == sorted(f"{rid}/fan/1/{i}" for i in range(1, 21) if i != 6)  # once each, M6 never
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_id
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    # one activity per item, deciding and acting; the two big items' decisions asked for approval,
    # and the approved one acted in a second activity
    assert sorted(scheduled) == sorted([*(f"fan/1/{i}" for i in range(1, 21)), "fan/1/15"])
    running, most = 0, 0
    for e in events:  # never more than `concurrency` tool activities started and not yet finished
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            running += 1
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            running -= 1
        most = max(most, running)
    assert 2 <= most <= 3
    records = [(r.step_id.removeprefix(f"{rid}/"), r.kind, r.decision, r.amount) for r in audit.records()]
    assert ("fan/1/15", "effect", "allow", 60.0) in records and ("fan/1/6", "approval", "reject", None) in records
    assert sum(kind == "effect" for _, kind, _, _ in records) == 19
