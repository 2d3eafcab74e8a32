"""Workers for tests, over the shared test tools."""

from __future__ import annotations

import asyncio

from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from chamberlain.agents import ModelRegistry
from chamberlain.workflows import GraphWorkflow, PendingApproval, RunResult, create_worker, progress
from tests.support import toolbox


def graph_worker(client: Client, task_queue: str, models: ModelRegistry | None = None) -> Worker:
    return create_worker(client, models=models or toolbox.models(), tools=toolbox.tools(), task_queue=task_queue)


async def wait_for_approval(handle: WorkflowHandle[GraphWorkflow, RunResult]) -> PendingApproval:
    """The run's pending approval, once it has one (polled through the progress query)."""
    for _ in range(200):
        if found := (await progress(handle)).pending_approval:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{handle.id}: no approval became pending")
