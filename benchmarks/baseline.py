"""The baseline: a raw Temporal workflow that runs N no-op activities one after another."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


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
