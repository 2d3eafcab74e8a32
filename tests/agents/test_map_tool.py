"""A map over a tool: one gated tool call per item, each its own step ``node/visit/index``, in
YAML and from the builder, checked at load like an agent's toolset. In-process here; the durable
twin, with its concurrency limit read from history, is tests/workflows/test_map_tool.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from chamberlain.agents import GraphSpec, ModelRegistry, dump_graph, parse_graph
from chamberlain.agents._builder import Graph
from chamberlain.agents._exceptions import GraphSpecError
from chamberlain.agents._loader import check_graph
from chamberlain.agents._safety import review_graph
from chamberlain.agents._steps import ApprovalAnswer, ApprovalRequest
from chamberlain.workflows import PolicyEngine
from chamberlain.workflows._local import run_gated_in_process
from tests.agents.test_agent_node import CUSTOMER, MANAGER, gate
from tests.support import toolbox

BIG = {6: 80.0, 15: 90.0}  # over the policy's 50: these items wait for a manager
ITEMS = [{"order_id": f"M{i}", "amount": BIG.get(i, 10.0)} for i in range(1, 21)]
YAML = """
name: refund-each
grant: [erp.refund.create]
state:
  items: {type: list}
  results: {type: list}
start: fan
nodes:
  fan:
    type: map
    over: items
    tool: erp.refund
    input: {order_id: item.order_id, amount: item.amount}
    write: results
    concurrency: 3
    timeout: 20s
    next: done
  done: {type: end}
"""


class Batch(BaseModel):
    items: list[Any] = []
    results: list[Any] = []


def built(**fan: Any) -> GraphSpec:
    graph = Graph("refund-each", state=Batch, grant=["erp.refund.create"])
    options: dict[str, Any] = {"input": {"order_id": "item.order_id", "amount": "item.amount"}, "concurrency": 3}
    options |= {"timeout": "20s"} | fan
    return (
        graph.map("fan", over="items", tool="erp.refund", write="results", next="done", **options).end("done").build()
    )


def with_tool(tool: str) -> GraphSpec:
    """The map calling another tool (unchecked: what the loader's checks are for)."""
    spec = built()
    return spec.model_copy(update={"nodes": {**spec.nodes, "fan": spec.nodes["fan"].model_copy(update={"tool": tool})}})


def answer(step_id: str, local_id: str) -> ApprovalAnswer:
    """Item 15 approved at a lower amount, item 6 rejected with a reason."""
    if local_id == "fan/1/15":
        edited = {"args": {"order_id": "M15", "amount": 60.0}}
        return ApprovalAnswer(step_id=step_id, outcome="approve", approver=MANAGER, values=edited)
    return ApprovalAnswer(step_id=step_id, outcome="reject", approver=MANAGER, reason="M6 已退过")


def test_the_yaml_and_the_builder_say_the_same_map() -> None:
    from_yaml = parse_graph(YAML, tools=toolbox.tools())
    assert from_yaml.nodes == built().nodes and from_yaml.grant == built().grant
    assert parse_graph(dump_graph(built())).nodes == built().nodes  # and exports back to YAML
    fan = from_yaml.nodes["fan"]
    assert fan.type == "map" and fan.tool == "erp.refund" and fan.graph is None and fan.timeout.total_seconds() == 20


async def test_each_item_is_its_own_gated_tool_call_and_a_refusal_stays_in_its_item(tmp_path: Path) -> None:
    the_gate, audit = gate(tmp_path)
    asked: list[ApprovalRequest] = []

    def approve(request: ApprovalRequest) -> ApprovalAnswer:
        asked.append(request)
        return answer(request.step.step_id, request.step.local_id)

    outcome = await run_gated_in_process(
        parse_graph(YAML), {"items": ITEMS}, gate=the_gate, models=ModelRegistry(), principal=CUSTOMER, approve=approve
    )
    assert outcome.status == "completed"
    results = outcome.output["results"]
    assert [r["status"] for r in results] == ["completed"] * 5 + ["refused"] + ["completed"] * 14
    assert [r["output"]["refund_id"] for r in results if r["output"]] == [f"R-M{i}" for i in range(1, 21) if i != 6]
    assert results[14]["output"]["amount"] == 60.0  # the edited call is the one that ran
    assert results[5]["error"].startswith("PermissionDenied") and "not approved (mei: M6 已退过)" in results[5]["error"]
    rid = asked[0].step.run_id
    assert sorted(r.step.local_id for r in asked) == ["fan/1/15", "fan/1/6"]
    refunds = sorted(step for _, step in toolbox.effects("refund"))
    assert refunds == sorted(f"{rid}/fan/1/{i}" for i in range(1, 21) if i != 6)  # once each, under its own step
    effects = {r.step_id: r.amount for r in audit.records() if r.kind == "effect"}
    assert len(effects) == 19 and effects[f"{rid}/fan/1/15"] == 60.0


def test_a_map_needs_exactly_one_of_graph_and_tool() -> None:
    with pytest.raises(GraphSpecError, match=r"nodes\.fan: .*either a 'graph' or a 'tool'"):
        built(graph=built().model_copy(update={"name": "also"}))
    with pytest.raises(GraphSpecError, match="either a 'graph' or a 'tool'"):
        Graph("none", state=Batch).map("fan", over="items", write="results", next="done").end("done").build()
    with pytest.raises(GraphSpecError, match=r"<graph>:9: nodes\.fan\.map: .*either a 'graph' or a 'tool'"):
        parse_graph(YAML.replace("    tool: erp.refund\n", ""))  # the YAML error names its line


def test_a_map_tool_outside_the_grant_or_with_wrong_arguments_is_refused_at_load() -> None:
    outside = built().model_copy(update={"grant": ["erp.order.read"]})
    with pytest.raises(GraphSpecError, match=r"map 'fan' calls tool 'erp\.refund' .* outside the graph's grant"):
        check_graph(outside, tools=toolbox.tools())
    with pytest.raises(GraphSpecError) as wrong:
        check_graph(built(input={"order": "item.order_id", "amount": "item.amount"}), tools=toolbox.tools())
    assert "passes argument 'order', which tool 'erp.refund' does not take" in str(wrong.value)
    assert "does not pass 'order_id', which tool 'erp.refund' requires" in str(wrong.value)
    with pytest.raises(GraphSpecError, match=r"map 'fan' uses unknown tool 'erp\.refnd'.*erp\.refund"):
        check_graph(with_tool("erp.refnd"), tools=toolbox.tools())


def test_a_map_over_an_irreversible_tool_is_refused_unless_the_policy_bounds_it() -> None:
    tools = toolbox.tools()  # test.refund_then_stall is irreversible (action erp.refund.create)
    spec = with_tool("test.refund_then_stall")
    with pytest.raises(GraphSpecError, match=r"map 'fan' calls irreversible tool 'test\.refund_then_stall' once per"):
        check_graph(spec, tools=tools, review=lambda s: review_graph(s, tools))
    bounded = PolicyEngine.load().bounded  # the shipped refunds policy asks for approval or limits the amount
    assert check_graph(spec, tools=tools, review=lambda s: review_graph(s, tools, bounded=bounded)) is spec
