"""The model server killed while it is sending an answer: a process of its own, SIGKILLed
after the status line, the headers and half the body. The cut is a retryable failure whose
reason operators see on the pending step; the step retries until the server is back and the
run completes — or, if it never comes back, the run moves on past it (or fails) with that
reason within the step's retry budget. Nothing waits forever.

(Model steps ask for whole answers, not SSE streams: "mid-stream" here is mid-body.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError

from chamberlain.agents import GraphSpec, ModelRegistry, PrivateChatModel, Tier
from chamberlain.workflows import GraphWorkflow, RunResult, progress, start_run
from tests.conftest import run_id
from tests.support.fake_model_server import FakeModelServer, ModelServerProcess
from tests.support.graphs import graph
from tests.support.workers import graph_worker

pytestmark = pytest.mark.chaos
GOOD = '{"order_id": "A1002"}'
MESSAGE = "Zhang Wei, order A1002"


@pytest.fixture
def edge() -> Iterator[ModelServerProcess]:
    server = ModelServerProcess(default_content=GOOD)
    yield server
    server.kill()


@pytest.fixture
def others() -> Iterator[dict[str, FakeModelServer]]:
    started = {tier: FakeModelServer(default_content=GOOD).start() for tier in ("external", "private")}
    yield started
    for server in started.values():
        server.stop()


def registry(edge: ModelServerProcess, others: dict[str, FakeModelServer]) -> ModelRegistry:
    """The extract graph's cascade; a 5-second client timeout, so only the kill cuts the answer."""
    models = ModelRegistry()
    edge_client = PrivateChatModel(base_url=edge.base_url, model="edge", timeout=5)
    models.register("edge-model", edge_client, Tier.EDGE, trust=["pii"])
    for tier, server in others.items():
        client = PrivateChatModel(base_url=server.base_url, model=tier, timeout=5)
        models.register(f"{tier}-model", client, Tier(tier), trust=[] if tier == "external" else ["pii"])
    return models


def patient_extract() -> GraphSpec:
    """The extract graph, its model step retrying for long enough to see the server restarted."""
    data = graph("extract").model_dump(by_alias=True, mode="json")
    data["nodes"]["extract"]["retry"] = {"max_attempts": 60, "initial_interval": "200ms", "max_interval": "1s"}
    return GraphSpec.model_validate(data)


async def pending_failure(client: Client, handle: WorkflowHandle[GraphWorkflow, RunResult]) -> BaseException:
    """The failure of the run's pending model step, as operators see it (decoded): waits for the
    step to have failed once."""
    for _ in range(600):
        pending = (await handle.describe()).raw_description.pending_activities
        if pending and pending[0].HasField("last_failure"):
            return await client.data_converter.decode_failure(pending[0].last_failure)
        await asyncio.sleep(0.05)
    raise AssertionError("the model step never reported a failure")


def first_application_error(failure: BaseException) -> ApplicationError:
    """The application's error in a failure's chain: the server may have wrapped it (its
    "Failure exceeds size limit." keeps the original as the cause)."""
    found: BaseException | None = failure
    while found is not None and not isinstance(found, ApplicationError):
        found = found.__cause__
    assert found is not None, f"no application error in {failure!r}"
    return found


async def test_a_model_server_killed_mid_answer_is_retried_until_it_is_back(
    client: Client, task_queue: str, edge: ModelServerProcess, others: dict[str, FakeModelServer]
) -> None:
    edge.start("stall_mid_body")
    async with graph_worker(client, task_queue, registry(edge, others)):
        handle = await start_run(
            client, patient_extract(), {"message": MESSAGE}, run_id=run_id(), task_queue=task_queue
        )
        await asyncio.to_thread(edge.wait_for, "mid-body")
        edge.kill()  # SIGKILL with half the answer sent
        failure = await pending_failure(client, handle)
        await asyncio.to_thread(edge.start)  # back on the same port, answering normally
        result = await asyncio.wait_for(handle.result(), 60)
    reason = first_application_error(failure)
    assert reason.type == "ModelUnavailable"  # retryable: the server is unavailable, the request was fine
    assert result.output["order_id"] == "A1002"
    assert edge.received[0] == 1 and edge.received[1] >= 1  # the cut answer, then the retry that got through
    assert others["private"].received == [] and others["external"].received == []  # no escalation was needed
    assert "cut off: RemoteProtocolError" in reason.message, reason.message  # the reason, whole


async def test_a_model_server_killed_for_good_moves_the_run_on_with_the_reason(
    client: Client, task_queue: str, edge: ModelServerProcess, others: dict[str, FakeModelServer]
) -> None:
    """Through the step's four attempts the server stays dead: the cascade's next model answers
    and the step's routing says why the first did not — or, where unavailability does not move
    a cascade on, the run fails naming the server. Either way the run ends, with the reason."""
    edge.start("stall_mid_body")
    async with graph_worker(client, task_queue, registry(edge, others)):
        handle = await start_run(client, graph("extract"), {"message": MESSAGE}, run_id=run_id(), task_queue=task_queue)
        await asyncio.to_thread(edge.wait_for, "mid-body")
        edge.kill()  # and never started again
        try:
            result = await asyncio.wait_for(handle.result(), 60)
        except WorkflowFailureError as failed:
            cause = failed.cause
            assert isinstance(cause, ApplicationError) and cause.type == "ModelUnavailable"
            assert edge.base_url in cause.message and "unreachable or cut off" in cause.message, cause.message
        else:
            routing = (await progress(handle)).steps[0].routing
            assert result.output["order_id"] == "A1002" and routing[-1] == "private-model: ok", routing
            assert routing[0].startswith("edge") and "unavailable" in routing[0], routing
            assert len(others["private"].received) == 1
    assert edge.received == [1]
