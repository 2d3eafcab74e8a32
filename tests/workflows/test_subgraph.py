"""Sub-graphs: a node runs another graph as a child workflow — the same principal, the parent's
labels, a grant within the parent's (refused at load when it asks for more, and denied at run
time by the child's gate whatever its own spec says), outputs mapped back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError

from chamberlain.agents import GraphSpec, ScriptedChatModel
from chamberlain.agents._exceptions import GraphSpecError
from chamberlain.agents._loader import check_graph
from chamberlain.workflows import AuditLog, GraphWorkflow, RunRequest, progress, start_run
from tests.agents.test_agent_node import CUSTOMER
from tests.conftest import run_id
from tests.support import toolbox
from tests.workflows.test_agent_node import worker


def lookup(grant: list[str], tool: str = "erp.order", args: str = "{order_id: order_id}") -> dict[str, Any]:
    return {
        "name": "lookup",
        "grant": grant,
        "state": {"order_id": {}, "amount": {"type": "float", "default": 500.0}, "total": {"type": "float"}},
        "start": "look",
        "nodes": {
            "look": {
                "type": "tool",
                "tool": tool,
                "args": {"order_id": "order_id", **({"amount": "amount"} if tool == "erp.refund" else {})},
                "output": {"total": "result.total" if tool == "erp.order" else "result.amount"},
                "next": "done",
            },
            "done": {"type": "end"},
        },
    }


def parent(child: dict[str, Any], grant: list[str]) -> GraphSpec:
    return GraphSpec.model_validate(
        {
            "name": "parent",
            "grant": grant,
            "state": {"order_id": {"labels": ["pii"]}, "total": {"type": "float"}},
            "start": "sub",
            "graphs": {"lookup": child},
            "nodes": {
                "sub": {
                    "type": "subgraph",
                    "graph": "lookup",
                    "input": {"order_id": "order_id"},
                    "output": {"total": "result.total"},
                    "next": "done",
                },
                "done": {"type": "end"},
            },
        }
    )


async def test_a_subgraph_runs_as_a_child_workflow_and_maps_its_output_back(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    audit, rid = AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}"), run_id()
    spec = parent(lookup(["erp.order.read"]), ["erp.order.read", "erp.refund.create"])
    async with worker(client, task_queue, ScriptedChatModel(replies=["unused"]), audit):
        handle = await start_run(
            client, spec, {"order_id": "订单-7"}, run_id=rid, principal=CUSTOMER, task_queue=task_queue
        )
        result = await handle.result()
        child = client.get_workflow_handle_for(GraphWorkflow.run, f"{rid}/sub/1")
        child_result = await child.result()
        steps = (await progress(handle)).steps
    assert result.output["total"] == toolbox.ORDER_TOTAL
    assert child_result.principal == CUSTOMER  # the same principal
    assert toolbox.effects("order") == [("order", f"{rid}/sub/1/look/1")]  # its own step IDs under the parent's
    assert steps[0].labels["total"] == ["pii"]  # made from a pii field: it carries the label


def test_a_subgraph_asking_for_more_than_the_parents_grant_is_refused_at_load() -> None:
    child = lookup(["erp.order.read", "erp.refund.create"], tool="erp.refund")
    with pytest.raises(GraphSpecError, match=r"erp\.refund\.create outside the parent's grant"):
        check_graph(parent(child, ["erp.order.read"]), tools=toolbox.tools())
    ungranted = {**lookup(["erp.order.read"]), "grant": None}
    with pytest.raises(GraphSpecError, match="everything: no grant"):
        check_graph(parent(ungranted, ["erp.order.read"]), tools=toolbox.tools())


async def test_a_child_run_is_held_to_its_parents_grant_at_run_time(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    """Whatever the child's own spec grants (here a refund), the run started for a parent that
    granted only reads denies the refund at the gate: nothing is paid."""
    audit, rid = AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}"), run_id()
    child = GraphSpec.model_validate(lookup(["erp.order.read", "erp.refund.create"], tool="erp.refund"))
    request = RunRequest(graph=child, input={"order_id": "A1"}, principal=CUSTOMER, ceiling=["erp.order.read"])
    async with worker(client, task_queue, ScriptedChatModel(replies=["unused"]), audit):
        handle = await client.start_workflow(GraphWorkflow.run, request, id=rid, task_queue=task_queue)
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert getattr(failure.value.cause, "type", None) == "PermissionDenied"
    assert "not in the agent's grant" in str(failure.value.cause)
    assert toolbox.effects("refund") == []
    assert [(r.action, r.decision) for r in audit.records() if r.run_id == rid] == [("erp.refund.create", "deny")]
