"""The graph compiled to LangGraph and run in this process."""

from __future__ import annotations

from typing import Literal

import pytest
from langchain_core.messages import AIMessage, message_to_dict
from langgraph.graph.state import CompiledStateGraph

from chamberlain.agents import (
    ApprovalAnswer,
    ApprovalRequest,
    Budget,
    BudgetExceeded,
    GraphPlan,
    GraphSpecError,
    LocalExecutor,
    ModelNotFound,
    ModelOutputInvalid,
    PermissionDenied,
    Principal,
    RunFailed,
    StepFailed,
    StepLimitExceeded,
    StepOutcome,
    ToolCall,
    ToolNode,
    ToolReply,
    compile_to_langgraph,
    run_in_process,
)
from chamberlain.agents._compiler import Approver
from tests.support import toolbox
from tests.support.graphs import chat_models, conversation, expected_second_call_types, graph


async def test_compiles_to_a_langgraph_state_graph() -> None:
    plan = GraphPlan(graph("five_steps"))
    compiled = compile_to_langgraph(plan, LocalExecutor(toolbox.models(), toolbox.tools()))
    assert isinstance(compiled, CompiledStateGraph)
    assert set(plan.spec.nodes) <= set(compiled.get_graph().nodes)


async def test_five_step_graph_runs_in_process() -> None:
    trace: list[StepOutcome] = []
    result = await run_in_process(
        graph("five_steps"), {"message": "please refund"}, models=toolbox.models(), tools=toolbox.tools(), trace=trace
    )
    assert result.status == "completed" and result.end == "done"
    assert result.output == {"intent": "return", "order_id": "A1002", "amount": 120.5, "refund_id": "R-A1002"}
    assert [s.node for s in trace] == ["classify", "decide", "lookup", "refund", "done"]
    assert [e for e, _ in toolbox.effects()] == ["order", "refund"]


async def test_routes_by_condition() -> None:
    result = await run_in_process(
        graph("five_steps"), {"message": "where is it?"}, models=toolbox.models(), tools=toolbox.tools()
    )
    assert result.output["intent"] == "status" and result.output["refund_id"] is None
    assert toolbox.effects() == []


async def test_messages_keep_their_types() -> None:
    models, model = chat_models()
    history = [message_to_dict(m) for m in conversation()]
    result = await run_in_process(graph("chat"), {"history": history}, models=models, tools=toolbox.tools())
    second_call = model.calls[1][0]
    assert [type(m) for m in second_call] == expected_second_call_types()
    assert isinstance(second_call[1], AIMessage) and second_call[1].tool_calls[0]["id"] == "call-1"
    assert result.output["answer"] == "Asked about A1; told it ships."


async def test_loop_respects_max_steps() -> None:
    spec = graph("loop")
    ok = await run_in_process(spec, {"limit": 5}, models=toolbox.models(), tools=toolbox.tools())
    assert ok.output["n"] == 5 and ok.steps == 11
    bounded = spec.model_copy(update={"max_steps": 7})
    with pytest.raises(StepLimitExceeded, match="more than 7 steps"):
        await run_in_process(bounded, {"limit": 5}, models=toolbox.models(), tools=toolbox.tools())


async def test_approval_decides_the_path() -> None:
    def reject(request: ApprovalRequest) -> ApprovalAnswer:
        assert request.ask == "Refund 500.0?" and request.approvers == ["manager"]
        return ApprovalAnswer(step_id=request.step.step_id, outcome="reject", approver=Principal(id="m"))

    rejected = await run_in_process(
        graph("approval"), {}, models=toolbox.models(), tools=toolbox.tools(), approve=reject
    )
    assert rejected.status == "rejected" and toolbox.effects("refund") == []

    def approve(request: ApprovalRequest) -> ApprovalAnswer:
        return ApprovalAnswer(step_id=request.step.step_id, outcome="approve", approver=Principal(id="m"))

    approved = await run_in_process(
        graph("approval"), {}, models=toolbox.models(), tools=toolbox.tools(), approve=approve
    )
    assert approved.status == "completed" and approved.output["refund_id"] == "R-A1"


async def test_a_rejection_routed_to_an_end_node_is_reported_as_rejected() -> None:
    """`graph run` printed "completed" for a manager's "no" whose graph goes on to a goodbye."""
    spec = graph("approval")
    nodes = {**spec.nodes, "manager": spec.nodes["manager"].model_copy(update={"on_reject": "done"})}
    spec = spec.model_copy(update={"nodes": nodes})

    def answer(outcome: Literal["approve", "reject", "request_changes"]) -> Approver:
        return lambda request: ApprovalAnswer(step_id=request.step.step_id, outcome=outcome, approver=Principal(id="m"))

    rejected = await run_in_process(spec, {}, models=toolbox.models(), tools=toolbox.tools(), approve=answer("reject"))
    assert (rejected.status, rejected.end, rejected.steps) == ("rejected", "done", 2)
    assert toolbox.effects("refund") == []
    changes = await run_in_process(
        spec, {}, models=toolbox.models(), tools=toolbox.tools(), approve=answer("request_changes")
    )
    assert changes.status == "rejected"
    approved = await run_in_process(spec, {}, models=toolbox.models(), tools=toolbox.tools(), approve=answer("approve"))
    assert (approved.status, approved.end) == ("completed", "done")


async def test_a_run_that_fails_midway_keeps_the_steps_it_took() -> None:
    spec = graph("five_steps")
    refusing = {"tool": "test.flaky", "args": {"fail_times": "3", "kind": "'rejected'"}, "output": {}}
    spec = spec.model_copy(update={"nodes": {**spec.nodes, "refund": spec.nodes["refund"].model_copy(update=refusing)}})
    trace: list[StepOutcome] = []
    with pytest.raises(StepFailed, match="attempt 1 fails") as failed:
        await run_in_process(spec, {"message": "refund"}, models=toolbox.models(), tools=toolbox.tools(), trace=trace)
    assert failed.value.kind == "ToolRejected"
    assert [s.node for s in trace] == ["classify", "decide", "lookup"]


async def test_steps_go_through_the_executor_given() -> None:
    seen: list[str] = []

    class Counting(LocalExecutor):
        async def call_tool(self, call: ToolCall, node: ToolNode) -> ToolReply:
            seen.append(call.step.step_id)
            assert call.step.principal == Principal(id="ann", department="support")
            return await super().call_tool(call, node)

    executor = Counting(toolbox.models(), toolbox.tools())
    ann = Principal(id="ann", department="support")
    result = await run_in_process(graph("five_steps"), {"message": "refund please"}, executor=executor, principal=ann)
    assert result.status == "completed" and [s.rsplit("/", 2)[1:] for s in seen] == [["lookup", "1"], ["refund", "1"]]
    with pytest.raises(TypeError, match="needs models= and tools=, or an executor="):
        await run_in_process(graph("five_steps"), {}, tools=toolbox.tools())


def test_unknown_input_field_is_named() -> None:
    with pytest.raises(ValueError, match=r"input field.*colour.*not in the state of graph .loop."):
        GraphPlan(graph("loop")).initial_state({"colour": "red"})


def test_input_is_coerced_to_the_declared_types() -> None:
    state = GraphPlan(graph("approval")).initial_state({"amount": "12"})
    assert state["amount"] == 12.0 and isinstance(state["amount"], float)
    with pytest.raises(ValueError, match="state field 'amount' of graph 'approval'"):
        GraphPlan(graph("approval")).initial_state({"amount": "twelve"})


async def test_a_run_over_its_budget_stops_or_asks_its_approvers_once() -> None:
    spec = graph("five_steps").model_copy(update={"budget": Budget(max_tokens=1)})
    trace: list[StepOutcome] = []
    with pytest.raises(BudgetExceeded, match=r"run over budget: \d+ tokens > 1") as caught:
        await run_in_process(spec, {"message": "refund"}, models=toolbox.models(), tools=toolbox.tools(), trace=trace)
    assert caught.value.kind == "BudgetExceeded" and toolbox.effects() == []
    asked: list[ApprovalRequest] = []

    def finance(request: ApprovalRequest) -> ApprovalAnswer:
        asked.append(request)
        return ApprovalAnswer(step_id=request.step.step_id, outcome="approve", approver=Principal(id="f"))

    escalating = spec.model_copy(update={"budget": Budget(max_tokens=1, on_exceeded="escalate", approvers=["fin"])})
    result = await run_in_process(
        escalating, {"message": "refund"}, models=toolbox.models(), tools=toolbox.tools(), approve=finance
    )
    assert result.status == "completed" and [e for e, _ in toolbox.effects()] == ["order", "refund"]
    assert len(asked) == 1 and asked[0].approvers == ["fin"] and asked[0].step.step_id.endswith("/budget/1")


def test_run_failures_are_classes_whose_kind_is_the_temporal_failure_type() -> None:
    """The durable engine fails runs with these ``ApplicationError`` types; each has its class."""
    for kind, cls in {
        "StepLimitExceeded": StepLimitExceeded,
        "BudgetExceeded": BudgetExceeded,
        "PermissionDenied": PermissionDenied,
        "ModelOutputInvalid": ModelOutputInvalid,
        "ModelNotFound": ModelNotFound,
    }.items():
        failure = RunFailed.of_kind(kind, "why")
        assert type(failure) is cls and failure.kind == kind and str(failure) == "why"
    refused = RunFailed.of_kind("ToolRejected", "no such order")
    assert type(refused) is StepFailed and refused.kind == "ToolRejected"
    assert issubclass(PermissionDenied, StepFailed) and not issubclass(GraphSpecError, RunFailed)
    with pytest.raises(LookupError, match="no model named 'gpt'"):  # ModelNotFound is a LookupError too
        toolbox.models().resolve(model="gpt")
