"""Determinism: recorded histories replay against the current workflow code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from chamberlain.workflows import GraphWorkflow, execute_run, sandbox_runner
from tests.conftest import run_id
from tests.support.graphs import graph
from tests.support.workers import graph_worker

HISTORIES = Path(__file__).parents[1] / "histories"


def replayer(converter: DataConverter = pydantic_data_converter) -> Replayer:
    """Recorded histories are plain; fresh ones are encrypted by the test client's codec."""
    return Replayer(workflows=[GraphWorkflow], data_converter=converter, workflow_runner=sandbox_runner())


@pytest.mark.parametrize("name", ["five_steps", "chat", "loop", "approval"])
async def test_recorded_history_replays(name: str) -> None:
    history = WorkflowHistory.from_json(f"h-{name}", (HISTORIES / f"{name}.json").read_text())
    result = await replayer().replay_workflow(history)
    assert result.replay_failure is None


async def test_fresh_histories_replay(client: Client, task_queue: str) -> None:
    rid = run_id()
    async with graph_worker(client, task_queue):
        await execute_run(client, graph("five_steps"), {"message": "refund"}, run_id=rid, task_queue=task_queue)
    history = await client.get_workflow_handle(rid).fetch_history()
    assert (await replayer(client.data_converter).replay_workflow(history)).replay_failure is None


async def test_a_diverging_history_is_caught() -> None:
    """The control: if the code scheduled other steps than history recorded, replay fails."""
    data = json.loads((HISTORIES / "five_steps.json").read_text())
    scheduled = [
        e["activityTaskScheduledEventAttributes"] for e in data["events"] if "activityTaskScheduledEventAttributes" in e
    ]
    lookup = next(a for a in scheduled if a["activityId"] == "lookup/1")
    lookup["activityType"]["name"] = "chamberlain.something_else"
    history = WorkflowHistory.from_json("h-five_steps", json.dumps(data))
    with pytest.raises(NondeterminismError):
        await replayer().replay_workflow(history)
