"""One audit record per effect, whatever the crash: a worker SIGKILLed after a refund's audit
record was committed but before its activity completed used to leave a second record when
the retry ran on another worker (records were keyed by the activity's attempt). Now the
record is keyed by the step and its decision, and the refund's allowance and effect are one record.
And a worker killed after its steps completed but before their records (written behind)
committed loses none: the run's seal rewrites them from its history."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle

from chamberlain.agents import GraphSpec
from chamberlain.workflows import DevServer, RunResult, start_run
from tests.conftest import run_id
from tests.support import toolbox
from tests.support.workers import audit_log
from tests.workflows.test_read_ahead import counting

pytestmark = pytest.mark.chaos
ROOT = Path(__file__).parents[2]

REFUND_GRAPH = {
    "name": "refund-once",
    "state": {
        "order_id": {"type": "str", "default": "A1005"},
        "total": {"type": "float", "default": 0},
        "refund_id": {"type": "str"},
    },
    "start": "lookup",
    "nodes": {
        "lookup": {
            "type": "tool",
            "tool": "erp.order",
            "args": {"order_id": "order_id"},
            "output": {"total": "result.total"},
            "next": "refund",
        },
        "refund": {
            "type": "tool",
            "tool": "erp.refund",
            "args": {"order_id": "order_id", "amount": "total"},
            "output": {"refund_id": "result.refund_id"},
            "timeout": "3s",
            "retry": {"max_attempts": 5, "initial_interval": "200ms"},
            "next": "done",
        },
        "done": {"type": "end", "output": ["refund_id"]},
    },
}
REFUND = GraphSpec.model_validate(REFUND_GRAPH)


def spawn(address: str, task_queue: str, *mode: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.worker_process", address, task_queue, *mode],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


async def finish_on_another_worker(address: str, task_queue: str, handle: WorkflowHandle[Any, RunResult]) -> RunResult:
    """The run's result, with a fresh worker process polling its queue."""
    worker = spawn(address, task_queue)
    try:
        return await handle.result()
    finally:
        worker.kill()
        worker.wait()


async def killed_after_the_refund_recorded(
    client: Client, dev_server: DevServer, task_queue: str
) -> WorkflowHandle[Any, RunResult]:
    """A refund run whose worker paid the refund and committed its record, then was SIGKILLed
    before the activity completed."""
    rid = run_id()
    holding = spawn(dev_server.address, task_queue, "hold", "refund")
    try:
        handle = await start_run(client, REFUND, {}, run_id=rid, task_queue=task_queue)
        assert holding.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(holding.stdout.readline), timeout=60)
        assert line.strip() == f"recorded {rid}/refund/1"  # committed; the activity has not completed
    finally:
        holding.kill()
        holding.wait()
    return handle


async def test_a_worker_killed_between_the_record_and_completion_leaves_one_record(
    client: Client, dev_server: DevServer, task_queue: str
) -> None:
    handle = await killed_after_the_refund_recorded(client, dev_server, task_queue)
    rid = handle.id
    result = await finish_on_another_worker(dev_server.address, task_queue, handle)
    assert result.status == "completed" and result.output["refund_id"] == "R-A1005"
    assert Counter(toolbox.effects("refund")) == {("refund", f"{rid}/refund/1"): 2}  # the tool ran again…
    audit = audit_log()
    mine = [(r.step_id, r.kind, r.decision) for r in audit.records() if r.run_id == rid]
    assert mine == [  # …but the step has one record: its allowance and its effect
        (f"{rid}/lookup/1", "effect", "allow"),
        (f"{rid}/refund/1", "effect", "allow"),
    ]
    assert audit.verify() is None


STALL = {
    "type": "tool",
    "tool": "test.slow",
    "args": {"seconds": "2"},
    "timeout": "4s",
    "retry": {"max_attempts": 3, "initial_interval": "200ms"},
    "next": "done",
}
NODES = REFUND_GRAPH["nodes"]
STALL_AFTER_REFUND = GraphSpec.model_validate(
    {**REFUND_GRAPH, "nodes": {**NODES, "refund": {**NODES["refund"], "next": "stall"}, "stall": STALL}}
)


async def lose_records_then_stall(
    address: str, task_queue: str, client: Client
) -> tuple[str, WorkflowHandle[Any, RunResult]]:
    """A run whose lookup and refund completed on a worker that never committed their records
    (killed during the next step): nothing of it is in the audit log."""
    rid = run_id()
    losing = spawn(address, task_queue, "lose")
    try:
        handle = await start_run(client, STALL_AFTER_REFUND, {}, run_id=rid, task_queue=task_queue)
        for _ in range(600):  # the stall has started: the lookup and the refund have completed
            if ("start", f"{rid}/stall/1") in toolbox.effects("start"):
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the stall step never started")
    finally:
        losing.kill()
        losing.wait()
    assert [r for r in audit_log().records() if r.run_id == rid] == []  # lost with the worker
    return rid, handle


async def test_records_a_killed_worker_never_committed_are_rewritten_from_history(
    client: Client, dev_server: DevServer, task_queue: str
) -> None:
    """The refund completes on a worker whose records written behind never commit; it is
    killed during the next step. Nothing of the run is in the audit log then; after the run
    ends on another worker, each step's record is there once, the refund paid once."""
    rid, handle = await lose_records_then_stall(dev_server.address, task_queue, client)
    result = await finish_on_another_worker(dev_server.address, task_queue, handle)
    assert result.status == "completed" and result.output["refund_id"] == "R-A1005"
    assert Counter(toolbox.effects("refund")) == {("refund", f"{rid}/refund/1"): 1}
    audit = audit_log()
    mine = [(r.step_id, r.kind, r.amount) for r in audit.records() if r.run_id == rid]
    assert sorted(mine) == [
        (f"{rid}/lookup/1", "effect", None),
        (f"{rid}/refund/1", "effect", toolbox.ORDER_TOTAL),
        (f"{rid}/stall/1", "effect", None),
    ]
    assert audit.verify() is None


async def test_a_worker_killed_inside_a_read_ahead_leaves_one_record_per_read(
    client: Client, dev_server: DevServer, task_queue: str
) -> None:
    """Reads in a row go ahead in one local activity; its worker is SIGKILLed after the third
    read's record committed. The workflow task that ran the local activities never completed,
    so they left nothing in history: the next worker reads them again — reads change nothing —
    and the audit log keeps one record per read."""
    rid = run_id()
    holding = spawn(dev_server.address, task_queue, "hold", "s3")
    try:
        handle = await start_run(client, counting(6), {}, run_id=rid, task_queue=task_queue)
        assert holding.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(holding.stdout.readline), timeout=60)
        assert line.strip() == f"recorded {rid}/s3/1"
    finally:
        holding.kill()
        holding.wait()
    result = await finish_on_another_worker(dev_server.address, task_queue, handle)
    assert result.output == {"n": 6}
    reads = Counter(step for _, step in toolbox.effects("count") if step.startswith(f"{rid}/"))
    assert reads == {**{f"{rid}/s{i}/1": 2 for i in range(4)}, f"{rid}/s4/1": 1, f"{rid}/s5/1": 1}
    audit = audit_log()
    mine = [(r.step_id, r.kind) for r in audit.records() if r.run_id == rid]
    assert sorted(mine) == [(f"{rid}/s{i}/1", "effect") for i in range(6)]
    assert audit.verify() is None
