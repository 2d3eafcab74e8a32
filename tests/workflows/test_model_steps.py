"""Model steps in real workflows against real HTTP model servers on loopback: every failure
mode of the server, the cascade, the trust boundary, a human as the last resort, budgets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from chamberlain.agents import GraphSpec, ModelRegistry, PrivateChatModel, Tier
from chamberlain.workflows import ApprovalAnswer, Principal, RunResult, decide, execute_run, progress, start_run
from tests.conftest import run_id
from tests.support.fake_model_server import Behaviour, FakeModelServer
from tests.support.graphs import graph
from tests.support.workers import graph_worker, wait_for_approval

SECRET = "Zhang Wei, 138-0013-8000, order A1002"  # PII the external model must never see
GOOD = '{"order_id": "A1002"}'


@pytest.fixture
def servers() -> Iterator[dict[str, FakeModelServer]]:
    started = {tier: FakeModelServer(default_content=GOOD).start() for tier in ("edge", "external", "private")}
    yield started
    for server in started.values():
        server.stop()


def registry(servers: dict[str, FakeModelServer], timeout: float = 0.5) -> ModelRegistry:
    models = ModelRegistry()
    for tier, server in servers.items():
        client = PrivateChatModel(base_url=server.base_url, model=f"{tier}-model", timeout=timeout)
        trust = [] if tier == "external" else ["pii"]
        models.register(f"{tier}-model", client, Tier(tier), trust=trust, cost_per_1k_input=1.0, cost_per_1k_output=2.0)
    return models


async def run(client: Client, task_queue: str, servers: dict[str, FakeModelServer], **options: object) -> RunResult:
    async with graph_worker(client, task_queue, registry(servers)):
        return await execute_run(
            client, graph("extract"), {"message": SECRET}, run_id=run_id(), task_queue=task_queue, **options
        )


@pytest.mark.parametrize("failure", ["500", "503", "hang", "truncated", "nonjson"])
async def test_a_retryable_server_failure_is_retried(
    client: Client, task_queue: str, servers: dict[str, FakeModelServer], failure: str
) -> None:
    servers["edge"].then(failure)
    result = await run(client, task_queue, servers)
    assert result.output["order_id"] == "A1002"
    assert len(servers["edge"].received) == 2 and servers["private"].received == []


async def test_429_retry_after_sets_the_next_retry_delay(
    client: Client, task_queue: str, servers: dict[str, FakeModelServer]
) -> None:
    """The model step's one retry follows the 429 and waits what its Retry-After says. The client
    waits up to 10 s for an answer, so a loaded machine cannot turn the 429 into a timeout."""
    servers["edge"].then(Behaviour("429", retry_after=1))
    rid = run_id()
    async with graph_worker(client, task_queue, registry(servers, timeout=10)):
        await execute_run(client, graph("extract"), {"message": SECRET}, run_id=rid, task_queue=task_queue)
    history = await client.get_workflow_handle(rid).fetch_history()
    model_steps = {
        e.event_id
        for e in history.events
        if e.activity_task_scheduled_event_attributes.activity_type.name == "chamberlain.model_step"
    }
    started = [
        e.activity_task_started_event_attributes
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
        and e.activity_task_started_event_attributes.scheduled_event_id in model_steps
    ]
    assert len(started) == 1  # one model step, started once more after its failure
    last = started[0]
    chain: list[str] = []
    failed: BaseException | None = await client.data_converter.decode_failure(last.last_failure)
    while failed is not None:  # the server may wrap an oversized failure: its cause is the original
        chain.append(repr(failed))
        failed = failed.__cause__
    why = (
        f"attempt {last.attempt} of the model step followed {' <- '.join(chain)}, not the 429: the 429's answer "
        "was not what failed last (a timeout or a dropped connection on a loaded machine would show here)"
    )
    assert last.attempt == 2, why
    failure = last.last_failure.application_failure_info
    assert failure.type == "ModelUnavailable" and failure.next_retry_delay.ToSeconds() == 1, why
    assert len(servers["edge"].received) == 2 and servers["private"].received == []


@pytest.mark.parametrize("refusal", ["400", "401", "404", "422"])
async def test_a_refused_request_fails_the_run_without_retrying(
    client: Client, task_queue: str, servers: dict[str, FakeModelServer], refusal: str
) -> None:
    servers["edge"].then(refusal)
    with pytest.raises(WorkflowFailureError) as caught:
        await run(client, task_queue, servers)
    assert isinstance(caught.value.cause, ApplicationError) and caught.value.cause.type == "ModelRequestRejected"
    assert len(servers["edge"].received) == 1


async def test_invalid_output_is_repaired_once_then_escalated_past_untrusted_models(
    client: Client, task_queue: str, servers: dict[str, FakeModelServer]
) -> None:
    servers["edge"].then(Behaviour(content="the order is A1002"), "invalid_tool_call")  # not JSON, twice
    rid = run_id()
    async with graph_worker(client, task_queue, registry(servers)):
        handle = await start_run(client, graph("extract"), {"message": SECRET}, run_id=rid, task_queue=task_queue)
        result = await handle.result()
        step = (await progress(handle)).steps[0]
    assert result.output["order_id"] == "A1002" and step.model == "private-model"
    assert step.routing == [
        "edge-model: invalid output (not JSON (Expecting value))",
        "external-model: skipped, may not receive data labelled pii",
        "private-model: ok",
    ]
    assert len(servers["edge"].received) == 2  # the first answer and one repair
    assert "That answer is invalid" in servers["edge"].received[1]["messages"][-1]["content"]
    assert servers["external"].received == []  # the PII never left
    assert result.usage.input_tokens > 0 and result.cost == pytest.approx(
        (result.usage.input_tokens * 1.0 + result.usage.output_tokens * 2.0) / 1000
    )


async def test_pii_never_reaches_an_external_model(
    client: Client, task_queue: str, servers: dict[str, FakeModelServer]
) -> None:
    for tier in ("edge", "private"):
        servers[tier].then(Behaviour(content="?"), Behaviour(content="?"))  # both fail, with their repairs
    spec = graph("extract").model_copy(deep=True)
    spec.nodes["extract"].cascade = ["edge", "external", "private"]  # type: ignore[union-attr]
    async with graph_worker(client, task_queue, registry(servers)):
        with pytest.raises(WorkflowFailureError) as caught:
            await execute_run(client, spec, {"message": SECRET}, run_id=run_id(), task_queue=task_queue)
    assert isinstance(caught.value.cause, ApplicationError) and caught.value.cause.type == "ModelOutputInvalid"
    assert "external-model: skipped, may not receive data labelled pii" in caught.value.cause.message
    assert servers["external"].received == []
    for tier in ("edge", "private"):  # the trusted models did get it: the check is not vacuous
        assert "138-0013-8000" in servers[tier].received_text()


async def test_a_human_answers_when_every_model_fails(
    client: Client, task_queue: str, servers: dict[str, FakeModelServer]
) -> None:
    servers["edge"].then(Behaviour(content="?"), Behaviour(content="?"))
    servers["private"].then(Behaviour(content="?"), Behaviour(content="?"))
    async with graph_worker(client, task_queue, registry(servers)):
        handle = await start_run(client, graph("extract"), {"message": SECRET}, run_id=run_id(), task_queue=task_queue)
        pending = await wait_for_approval(handle)
        assert pending.approvers == ["agent"] and "provide order_id" in pending.ask
        agent = Principal(id="li", roles=["agent"])
        await decide(
            handle,
            ApprovalAnswer(step_id=pending.step_id, outcome="approve", approver=agent, values={"order_id": "A1002"}),
        )
        result = await handle.result()
        step = (await progress(handle)).steps[0]
    assert result.output["order_id"] == "A1002" and step.routing[-1] == "human li: answered"


def two_model_steps(budget: dict[str, object]) -> GraphSpec:
    data = graph("extract").model_dump(by_alias=True, mode="json")
    data["budget"] = budget
    data["nodes"]["extract"]["next"] = "again"
    data["nodes"]["again"] = {**data["nodes"]["extract"], "next": "done"}
    return GraphSpec.model_validate(data)


async def test_a_run_over_its_token_budget_stops(
    client: Client, task_queue: str, servers: dict[str, FakeModelServer]
) -> None:
    async with graph_worker(client, task_queue, registry(servers)):
        with pytest.raises(WorkflowFailureError) as caught:
            spec = two_model_steps({"max_tokens": 1})
            await execute_run(client, spec, {"message": SECRET}, run_id=run_id(), task_queue=task_queue)
    assert isinstance(caught.value.cause, ApplicationError) and caught.value.cause.type == "BudgetExceeded"
    assert "tokens > 1" in caught.value.cause.message
    assert len(servers["edge"].received) == 1  # the second model step never ran


async def test_a_budget_can_escalate_to_a_person(
    client: Client, task_queue: str, servers: dict[str, FakeModelServer]
) -> None:
    spec = two_model_steps({"max_cost": 0.00001, "on_exceeded": "escalate", "approvers": ["finance"]})
    async with graph_worker(client, task_queue, registry(servers)):
        handle = await start_run(client, spec, {"message": SECRET}, run_id=run_id(), task_queue=task_queue)
        pending = await wait_for_approval(handle)
        assert pending.approvers == ["finance"] and "over budget (cost" in pending.ask
        await decide(
            handle,
            ApprovalAnswer(step_id=pending.step_id, outcome="approve", approver=Principal(id="f", roles=["finance"])),
        )
        result = await handle.result()
    assert result.status == "completed" and len(servers["edge"].received) == 2


# A model down through a step's retries does not fail the run: the cascade moves on to its next
# model, or to a person, and the step's routing says why.
ATTEMPTS = 4  # the extract graph's retry policy


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
