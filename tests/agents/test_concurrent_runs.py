"""One compiled graph serves many runs: each run's step IDs, principal and data labels stay its own."""

from __future__ import annotations

import asyncio
import json

import pytest
from langchain_core.messages import AIMessage

from chamberlain.agents import (
    ApprovalAnswer,
    ApprovalRequest,
    ClassifyCall,
    ClassifyReply,
    GraphPlan,
    GraphSpec,
    GraphSpecError,
    ModelCall,
    ModelReply,
    Principal,
    StepOutcome,
    ToolCall,
    ToolReply,
    compile_to_langgraph,
)
from chamberlain.agents._compiler import RunContext, graph_input, run_compiled
from chamberlain.agents._spec import ApprovalNode, ClassifyNode, ModelNode, ToolNode
from chamberlain.agents._tooling import call_tool
from tests.support import toolbox

ALICE, BOB = Principal(id="alice", customer="C1"), Principal(id="bob", customer="C2")
ALICE_MAIL, BOB_MAIL = "li.na@example.cn", "王伟@例子.中国"  # the second one is not Latin


def spec() -> GraphSpec:
    """Read a labelled message, loop a tool twice, then forward a summary that quotes the message."""
    return GraphSpec.model_validate(
        {
            "name": "concurrent",
            "state": {"message": {"labels": ["pii"]}, "summary": {}, "n": {"type": "int", "default": 0}},
            "start": "read",
            "max_steps": 10,
            "nodes": {
                "read": {
                    "type": "model",
                    "model": "echo",
                    "prompt": "{message}",
                    "output": {"summary": {}},
                    "next": "count",
                },
                "count": {
                    "type": "tool",
                    "tool": "test.count",
                    "args": {"n": "n"},
                    "output": {"n": "result.n"},
                    "next": [{"when": "n < 2", "to": "count"}, {"to": "forward"}],
                },
                "forward": {
                    "type": "model",
                    "model": "echo",
                    "prompt": "Forward: {summary}",
                    "output": {"summary": {}},
                    "next": "done",
                },
                "done": {"type": "end"},
            },
        }
    )


class Recorder:
    """Answers models by echoing the prompt, runs tools for real, and records every call.
    ``meet``: the first model calls of two runs wait for each other, so the runs interleave."""

    def __init__(self, meet: asyncio.Barrier | None = None) -> None:
        self.models: list[ModelCall] = []
        self.tools: list[ToolCall] = []
        self.meet = meet
        self.registry = toolbox.tools()

    async def call_model(self, call: ModelCall, node: ModelNode | ClassifyNode) -> ModelReply:
        self.models.append(call)
        if self.meet is not None and call.step.node == "read":
            await self.meet.wait()
        summary = f"summary of {call.messages[-1].text}"
        return ModelReply(
            message=AIMessage(json.dumps({"summary": summary})), structured={"summary": summary}, model="echo"
        )

    async def classify(self, call: ClassifyCall, node: ClassifyNode) -> ClassifyReply:
        raise AssertionError("no classify node here")

    async def call_tool(self, call: ToolCall, node: ToolNode) -> ToolReply:
        self.tools.append(call)
        await asyncio.sleep(0)  # let the other run step in between
        return await call_tool(self.registry, call)

    async def request_approval(self, request: ApprovalRequest, node: ApprovalNode) -> ApprovalAnswer:
        raise AssertionError("no approval node here")

    def step_ids(self, run_id: str) -> list[str]:
        calls = [*self.models, *self.tools]
        return sorted(c.step.step_id for c in calls if c.step.run_id == run_id)


async def test_concurrent_runs_of_one_compiled_graph_keep_their_steps_and_labels_apart() -> None:
    plan = GraphPlan(spec())
    executor = Recorder(meet=asyncio.Barrier(2))
    graph = compile_to_langgraph(plan, executor)
    traces: dict[str, list[StepOutcome]] = {"a": [], "b": []}
    alice, bob = await asyncio.gather(
        run_compiled(
            plan, graph, {"message": f"I am {ALICE_MAIL}, refund"}, principal=ALICE, run_id="a", trace=traces["a"]
        ),
        run_compiled(plan, graph, {"message": f"我是 {BOB_MAIL}，退款"}, principal=BOB, run_id="b", trace=traces["b"]),
    )
    for rid in ("a", "b"):
        assert executor.step_ids(rid) == [f"{rid}/count/1", f"{rid}/count/2", f"{rid}/forward/1", f"{rid}/read/1"]
        assert [s.node for s in traces[rid]] == ["read", "count", "count", "forward", "done"]
    assert alice.output["n"] == bob.output["n"] == 2 and alice.steps == bob.steps == 5
    assert ALICE_MAIL in alice.output["summary"] and BOB_MAIL in bob.output["summary"]
    for call in [*executor.models, *executor.tools]:
        assert call.step.principal == {"a": ALICE, "b": BOB}[call.step.run_id]
    forwards = {c.step.run_id: c for c in executor.models if c.step.node == "forward"}
    for rid, own, other in (("a", ALICE_MAIL, BOB_MAIL), ("b", BOB_MAIL, ALICE_MAIL)):
        call = forwards[rid]
        assert call.labels == ["pii"]  # the summary quotes the labelled message
        seen = call.sensitive["pii"]
        assert seen and all(own in value for value in seen) and not any(other in value for value in seen)


async def test_the_same_compiled_graph_run_twice_starts_each_run_afresh() -> None:
    plan = GraphPlan(spec())
    executor = Recorder()
    graph = compile_to_langgraph(plan, executor)
    for rid, mail in (("first", ALICE_MAIL), ("second", BOB_MAIL)):
        await run_compiled(plan, graph, {"message": f"mail {mail}"}, principal=ALICE, run_id=rid)
        assert executor.step_ids(rid) == [f"{rid}/count/1", f"{rid}/count/2", f"{rid}/forward/1", f"{rid}/read/1"]
    second = [c for c in executor.models if c.step.run_id == "second"]
    assert [c.labels for c in second] == [["pii"], ["pii"]]  # the second run's labels are there too
    assert all(ALICE_MAIL not in v for c in second for v in c.sensitive.get("pii", []))
    assert any(BOB_MAIL in v for v in second[1].sensitive["pii"])


async def test_a_compiled_graph_refuses_to_run_without_its_run_context() -> None:
    plan = GraphPlan(spec())
    graph = compile_to_langgraph(plan, Recorder())
    with pytest.raises(TypeError, match=r"needs context=RunContext\(run_id=...\)"):
        await graph.ainvoke(graph_input(plan, {"message": "hi"}))
    done = await graph.ainvoke(graph_input(plan, {"message": "hi"}), context=RunContext(run_id="r"))
    assert done["n"] == 2


def test_a_state_field_may_not_take_a_run_channel_name() -> None:
    clash = spec().model_copy(update={"state": {**spec().state, "chamberlain.labels": spec().state["summary"]}})
    with pytest.raises(GraphSpecError, match=r"state field 'chamberlain.labels' is reserved"):
        compile_to_langgraph(GraphPlan(clash), Recorder())
