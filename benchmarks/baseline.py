"""The baselines: raw Temporal workflows with the same activity count as the graphs they are
compared with — no graph, no gate, no audit. Kept apart from the graph code: Temporal's
sandbox re-imports a workflow's module, and this one imports only temporalio."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.worker import Worker


@activity.defn(name="bench.raw_noop")
async def raw_noop(i: int) -> int:
    return i + 1


@workflow.defn(name="bench.raw_chain")
class RawChain:
    @workflow.run
    async def run(self, steps: int) -> int:
        n = 0
        for _ in range(steps):
            n = await workflow.execute_activity(raw_noop, n, start_to_close_timeout=timedelta(seconds=10))
        return n


@workflow.defn(name="bench.raw_local_chain")
class RawLocalChain:
    @workflow.run
    async def run(self, steps: int) -> int:
        n = 0
        for _ in range(steps):
            n = await workflow.execute_local_activity(raw_noop, n, start_to_close_timeout=timedelta(seconds=10))
        return n


@workflow.defn(name="bench.raw_parked")
class RawParked:
    """Waits for an update, then runs one activity: the baseline of a parked run."""

    def __init__(self) -> None:
        self.approved = False

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.approved)
        return await workflow.execute_activity(raw_noop, 0, start_to_close_timeout=timedelta(seconds=10))

    @workflow.update(name="approve")
    async def approve(self) -> str:
        self.approved = True
        return "approve"


def raw_worker(client: Any, task_queue: str) -> Worker:
    return Worker(client, task_queue=task_queue, workflows=[RawChain, RawLocalChain, RawParked], activities=[raw_noop])
