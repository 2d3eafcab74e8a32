"""A model that stays down through a step's retries does not fail the run: the cascade moves on
to its next model, or to a person, and the step's routing says why — in a real workflow against
real HTTP model servers on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from temporalio.client import Client

from chamberlain.workflows import ApprovalAnswer, Principal, decide, progress, start_run
from tests.conftest import run_id
from tests.support.fake_model_server import FakeModelServer
from tests.support.graphs import graph
from tests.support.workers import graph_worker, wait_for_approval
from tests.workflows.test_model_steps import GOOD, SECRET, registry

ATTEMPTS = 4  # the extract graph's retry policy


@pytest.fixture
def servers() -> Iterator[dict[str, FakeModelServer]]:
    started = {tier: FakeModelServer(default_content=GOOD).start() for tier in ("edge", "external", "private")}
    yield started
    for server in started.values():
        server.stop()


async def test_a_model_down_through_its_retries_hands_the_step_to_the_next_model(
    client: Client, task_queue: str, servers: dict[str, FakeModelServer]
) -> None:
    servers["edge"].then(*["hang"] * ATTEMPTS)
    async with graph_worker(client, task_queue, registry(servers)):
        handle = await start_run(client, graph("extract"), {"message": SECRET}, run_id=run_id(), task_queue=task_queue)
        result = await handle.result()
        step = (await progress(handle)).steps[0]
    assert result.status == "completed" and result.output["order_id"] == "A1002"
    assert len(servers["edge"].received) == ATTEMPTS and len(servers["private"].received) == 1
    assert step.model == "private-model" and step.routing[0].startswith("edge: unavailable (")
    assert step.routing[1:] == ["external-model: skipped, may not receive data labelled pii", "private-model: ok"]


async def test_every_model_down_reaches_a_person(
    client: Client, task_queue: str, servers: dict[str, FakeModelServer]
) -> None:
    servers["edge"].then(*["500"] * ATTEMPTS)
    servers["private"].then(*["500"] * ATTEMPTS)
    agent = Principal(id="aiko", roles=["agent"])
    async with graph_worker(client, task_queue, registry(servers)):
        handle = await start_run(client, graph("extract"), {"message": SECRET}, run_id=run_id(), task_queue=task_queue)
        pending = await wait_for_approval(handle)
        answer = ApprovalAnswer(
            step_id=pending.step_id, outcome="approve", approver=agent, values={"order_id": "A1002"}
        )
        await decide(handle, answer)
        result = await handle.result()
        step = (await progress(handle)).steps[0]
    assert result.status == "completed" and result.output["order_id"] == "A1002"
    assert [r.split(" (")[0] for r in step.routing] == [
        "edge: unavailable",
        "external-model: skipped, may not receive data labelled pii",
        "private: unavailable",
        "human aiko: answered",
    ]
