"""Graph runs on a real Temporal dev server: every model and tool step an activity."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from langchain_core.messages import AIMessage, message_to_dict
from temporalio.client import Client, WorkflowFailureError, WorkflowHistory
from temporalio.exceptions import ApplicationError

from chamberlain.agents import GraphSpec, ModelRegistry, ScriptedChatModel, run_in_process
from chamberlain.workflows import RunResult, execute_run, progress, start_run
from tests.conftest import run_id
from tests.support import toolbox
from tests.support.graphs import chat_models, conversation, expected_second_call_types, graph
from tests.support.workers import graph_worker


def local_activities(history: WorkflowHistory) -> list[str]:
    """The types of a run's local activities, in order (each leaves a marker in history)."""
    markers = [e.marker_recorded_event_attributes for e in history.events]
    return [
        json.loads(m.details["data"].payloads[0].data)["activity_type"]
        for m in markers
        if m.marker_name == "core_local_activity"
    ]


async def test_five_step_graph_completes_as_in_process(client: Client, task_queue: str) -> None:
    spec = graph("five_steps")
    rid = run_id()
    async with graph_worker(client, task_queue):
        result = await execute_run(client, spec, {"message": "refund please"}, run_id=rid, task_queue=task_queue)
    in_process = await run_in_process(
        spec, {"message": "refund please"}, models=toolbox.models(), tools=toolbox.tools()
    )
    assert isinstance(result, RunResult)
    assert (result.status, result.end, result.output, result.steps) == (
        in_process.status,
        in_process.end,
        in_process.output,
        in_process.steps,
    )
    durable_effects = [e for e in toolbox.effects() if e[1].startswith(rid)]
    assert durable_effects == [("order", f"{rid}/lookup/1"), ("refund", f"{rid}/refund/1")]


async def test_each_effectful_step_is_an_activity_with_the_spec_options(client: Client, task_queue: str) -> None:
    rid = run_id()
    async with graph_worker(client, task_queue):
        await execute_run(client, graph("five_steps"), {"message": "refund"}, run_id=rid, task_queue=task_queue)
    history = await client.get_workflow_handle(rid).fetch_history()
    scheduled = [
        e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert [(a.activity_type.name, a.activity_id) for a in scheduled] == [
        ("chamberlain.model_step", "classify/1"),
        ("chamberlain.decide_and_act", "refund/1"),  # the refund's decision and effect, in one activity
    ]  # lookup reads only: a local activity, as is the seal
    assert scheduled[0].start_to_close_timeout.ToSeconds() == 20
    assert scheduled[1].retry_policy.maximum_attempts == 5
    # The lookup's local activity (a read-ahead: a tool may follow) also told the run which of its
    # tools write: no activity of its own.
    assert local_activities(history) == ["chamberlain.read_ahead", "chamberlain.audit_seal"]


TWO_WRITES = GraphSpec.model_validate(
    {
        "name": "two-writes",
        "state": {"label": {"type": "str"}},
        "start": "first",
        "nodes": {
            "first": {"type": "tool", "tool": "test.slow", "args": {"seconds": "0", "label": "'a'"}, "next": "second"},
            "second": {"type": "tool", "tool": "test.slow", "args": {"seconds": "0", "label": "'b'"}, "next": "done"},
            "done": {"type": "end"},
        },
    }
)


async def test_a_run_whose_first_tool_writes_learns_so_in_that_step(client: Client, task_queue: str) -> None:
    """Not knowing yet, the run asks its first step's decision in a local activity (a read-ahead,
    as a read may follow), which says the tool writes and goes no further: that step acts in its
    tool's activity with the decision's ticket; the next write is decided where it acts."""
    rid = run_id()
    async with graph_worker(client, task_queue):
        result = await execute_run(client, TWO_WRITES, {}, run_id=rid, task_queue=task_queue)
    assert result.status == "completed"
    history = await client.get_workflow_handle(rid).fetch_history()
    scheduled = [e.activity_task_scheduled_event_attributes for e in history.events]
    assert [(a.activity_type.name, a.activity_id) for a in scheduled if a.activity_id] == [
        ("chamberlain.tool_step", "first/1"),
        ("chamberlain.decide_and_act", "second/1"),
    ]
    assert local_activities(history) == ["chamberlain.read_ahead", "chamberlain.audit_seal"]
    finished = [step for _, step in toolbox.effects("done") if step.startswith(rid)]
    assert finished == [f"{rid}/first/1", f"{rid}/second/1"]


async def test_messages_keep_their_types_across_the_activity_boundary(client: Client, task_queue: str) -> None:
    models, model = chat_models()
    history = [message_to_dict(m) for m in conversation()]
    async with graph_worker(client, task_queue, models):
        result = await execute_run(client, graph("chat"), {"history": history}, run_id=run_id(), task_queue=task_queue)
    second_call = model.calls[1][0]
    assert [type(m) for m in second_call] == expected_second_call_types()
    assert isinstance(second_call[1], AIMessage) and second_call[1].tool_calls[0]["args"] == {"order_id": "A1"}
    assert result.output["answer"] == "Asked about A1; told it ships."


async def test_retryable_failures_are_retried_under_the_node_policy(client: Client, task_queue: str) -> None:
    spec = graph("loop").model_copy(deep=True)
    spec.nodes["bump"] = spec.nodes["bump"].model_copy(update={"tool": "test.flaky", "args": {"fail_times": "2"}})
    spec.nodes["bump"].retry.initial_interval = spec.nodes["bump"].retry.max_interval = timedelta(milliseconds=50)
    rid = run_id()
    async with graph_worker(client, task_queue):
        result = await execute_run(client, spec, {"limit": 1}, run_id=rid, task_queue=task_queue)
    assert result.output["n"] == 3  # the third attempt succeeded and reported its attempt number
    assert toolbox.effects("flaky") == [("flaky", f"{rid}/bump/1")] * 3


async def test_non_retryable_failure_ends_the_run_with_its_reason(client: Client, task_queue: str) -> None:
    spec = graph("loop").model_copy(deep=True)
    spec.nodes["bump"] = spec.nodes["bump"].model_copy(
        update={"tool": "test.flaky", "args": {"fail_times": "9", "kind": "'rejected'"}}
    )
    rid = run_id()
    async with graph_worker(client, task_queue):
        with pytest.raises(WorkflowFailureError) as caught:
            await execute_run(client, spec, {}, run_id=rid, task_queue=task_queue)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "ToolRejected"
    assert f"step {rid}/bump/1 failed" in cause.message and "attempt 1 fails" in cause.message
    assert len(toolbox.effects("flaky")) == 1


async def test_invalid_tool_arguments_name_the_field(client: Client, task_queue: str) -> None:
    spec = graph("loop").model_copy(deep=True)
    spec.nodes["bump"] = spec.nodes["bump"].model_copy(update={"args": {"n": "'many'"}})
    async with graph_worker(client, task_queue):
        with pytest.raises(WorkflowFailureError) as caught:
            await execute_run(client, spec, {}, run_id=run_id(), task_queue=task_queue)
    assert isinstance(caught.value.cause, ApplicationError) and caught.value.cause.type == "ToolInputInvalid"
    assert "test.count: n: Input should be a valid integer" in caught.value.cause.message
    assert toolbox.effects("count") == []


async def test_invalid_model_output_is_not_passed_on(client: Client, task_queue: str) -> None:
    from chamberlain.agents import ModelRegistry, ScriptedChatModel

    models = ModelRegistry()
    models.register("bad", ScriptedChatModel(replies=['{"intent": "maybe", "order_id": "A1"}']))
    async with graph_worker(client, task_queue, models):
        with pytest.raises(WorkflowFailureError) as caught:
            await execute_run(client, graph("five_steps"), {"message": "x"}, run_id=run_id(), task_queue=task_queue)
    assert isinstance(caught.value.cause, ApplicationError) and caught.value.cause.type == "ModelOutputInvalid"
    assert toolbox.effects() == []


async def test_long_runs_continue_as_new_and_keep_step_ids_unique(client: Client, task_queue: str) -> None:
    rid = run_id()
    async with graph_worker(client, task_queue):
        result = await execute_run(
            client, graph("loop"), {"limit": 12}, run_id=rid, task_queue=task_queue, steps_per_segment=5
        )
    assert result.output["n"] == 12 and result.steps == 25
    assert result.segments == 5  # 25 steps, 5 per segment
    step_ids = [s for _, s in toolbox.effects("count")]
    assert step_ids == [f"{rid}/bump/{i}" for i in range(1, 13)]


async def test_max_steps_stops_a_run(client: Client, task_queue: str) -> None:
    spec = graph("loop").model_copy(update={"max_steps": 6})
    async with graph_worker(client, task_queue):
        with pytest.raises(WorkflowFailureError) as caught:
            await execute_run(client, spec, {"limit": 50}, run_id=run_id(), task_queue=task_queue)
    assert isinstance(caught.value.cause, ApplicationError) and caught.value.cause.type == "StepLimitExceeded"
    assert len(toolbox.effects("count")) == 3


async def test_progress_lists_finished_steps(client: Client, task_queue: str) -> None:
    async with graph_worker(client, task_queue):
        handle = await start_run(
            client, graph("five_steps"), {"message": "refund"}, run_id=run_id(), task_queue=task_queue
        )
        await handle.result()
        seen = await progress(handle)
    assert [s.node for s in seen.steps] == ["classify", "decide", "lookup", "refund", "done"]
    assert seen.steps[0].model == "scripted-edge" and seen.steps[0].usage and seen.steps[0].usage.input_tokens > 0
    assert seen.steps[3].step_id == f"{handle.id}/refund/1"


def self_correcting_graph() -> GraphSpec:
    return GraphSpec.model_validate(
        {
            "name": "self-correcting",
            "state": {
                "n": {"type": "int", "default": 0},
                "raw": {"type": "str", "default": "many"},
                "error": {"type": "str"},
            },
            "start": "bump",
            "max_steps": 10,
            "nodes": {
                "bump": {
                    "type": "tool",
                    "tool": "test.count",
                    "args": {"n": "raw"},
                    "output": {"n": "result.n"},
                    "on_error": "fix",
                    "error": "error",
                    "next": "done",
                },
                "fix": {
                    "type": "model",
                    "prompt": "The tool said: {error}. Give a number.",
                    "output": {"raw": {"type": "str", "pattern": "^[0-9]+$"}},
                    "next": "bump",
                },
                "done": {"type": "end"},
            },
        }
    )


async def test_invalid_arguments_go_back_to_the_model_to_correct(client: Client, task_queue: str) -> None:
    model = ScriptedChatModel(replies=['{"raw": "3"}'])
    models = ModelRegistry()
    models.register("fixer", model)
    async with graph_worker(client, task_queue, models):
        result = await execute_run(client, self_correcting_graph(), {}, run_id=run_id(), task_queue=task_queue)
    assert result.output["n"] == 4 and result.steps == 4  # bump (refused), fix, bump, done
    assert "n: Input should be a valid integer" in model.calls[0][0][-1].text  # the model saw the field and value
    assert len(toolbox.effects("count")) == 1  # the refused call wrote nothing
