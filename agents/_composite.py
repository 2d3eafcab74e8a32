"""Nodes that run other graphs or a tool per item: a subgraph once, a map once per item of a list.

Each child run is a :class:`~agents.steps.GraphCall` through the executor — a child workflow
in the durable engine, a nested run in-process — whose step ID (``node/visit`` for a
subgraph, ``node/visit/item`` for a map's item) becomes the child's run ID suffix, so its
tool calls get their own idempotency keys and its approvals are its own. The child acts for
the same principal, knows the parent's labels, and carries the parent's grant, which the
gate holds its own grant within. A map over a tool makes each item a tool call
(``node/visit/item``, its idempotency key) that the gate decides like any other; a refusal is
that item's result, not the run's end.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from chamberlain.agents._label_flow import labelled_values
from chamberlain.agents._labels import DataLabels
from chamberlain.agents._outcomes import StepOutcome
from chamberlain.agents._spec import MapNode, SubgraphNode
from chamberlain.agents._state import State
from chamberlain.agents._steps import GraphCall, GraphReply, StepContext, StepExecutor, TokenUsage, ToolCall, ToolReply

if TYPE_CHECKING:
    from chamberlain.agents._plan import GraphPlan


async def run_subgraph(
    plan: GraphPlan,
    name: str,
    node: SubgraphNode,
    state: State,
    executor: StepExecutor,
    ctx: StepContext,
    labels: DataLabels,
) -> StepOutcome:
    values = {k: expression(state) for k, expression in plan.arguments(name).items()}
    call = GraphCall(step=ctx, graph=plan.spec.graphs[node.graph], input=values, grant=plan.spec.grant, labels=labels)
    reply = await executor.run_graph(call, node)
    scope = {**state, "result": reply.output}
    updates = {f: expression(scope) for f, expression in plan.outputs(name).items()}
    read = plan.labels_read(name, labels)
    field_labels, sensitive = plan.labelled(updates, {f: read for f in updates})
    return StepOutcome(
        node=name,
        updates=updates,
        next=plan.route(name, plan.merge(state, updates)),
        usage=reply.usage,
        cost=reply.cost,
        routing=[f"graph {node.graph}: {reply.status}"],
        labels=field_labels,
        sensitive=sensitive,
    )


async def run_map(
    plan: GraphPlan,
    name: str,
    node: MapNode,
    state: State,
    executor: StepExecutor,
    ctx: StepContext,
    labels: DataLabels,
) -> StepOutcome:
    """Every item's run, at most ``concurrency`` at once; results in the items' order."""
    if node.tool is not None:
        return await _map_tool(plan, name, node, state, executor, ctx, labels)
    items = list(state[node.over] or [])
    assert node.graph is not None
    child = plan.spec.graphs[node.graph]
    slots = asyncio.Semaphore(node.concurrency)

    async def branch(index: int, item: object) -> GraphReply:
        scope = {**state, "item": item, "index": index}
        values = {k: expression(scope) for k, expression in plan.arguments(name).items()}
        call = GraphCall(step=ctx.part(index), graph=child, input=values, grant=plan.spec.grant, labels=labels)
        async with slots:
            return await executor.run_graph(call, node)

    replies = await asyncio.gather(*(branch(i, item) for i, item in enumerate(items, start=1)))
    updates = {node.write: [{"status": r.status, "output": r.output} for r in replies]}
    read = plan.labels_read(name, labels)
    field_labels, sensitive = plan.labelled(updates, {node.write: read})
    usage = TokenUsage(
        input_tokens=sum(r.usage.input_tokens for r in replies),
        output_tokens=sum(r.usage.output_tokens for r in replies),
    )
    statuses = [r.status for r in replies]
    counts = ", ".join(f"{statuses.count(s)} {s}" for s in sorted(set(statuses)))
    return StepOutcome(
        node=name,
        updates=updates,
        next=plan.route(name, plan.merge(state, updates)),
        usage=usage,
        cost=sum(r.cost for r in replies),
        routing=[f"graph {node.graph} × {len(items)}: {counts}"],
        labels=field_labels,
        sensitive=sensitive,
    )


async def _map_tool(
    plan: GraphPlan,
    name: str,
    node: MapNode,
    state: State,
    executor: StepExecutor,
    ctx: StepContext,
    labels: DataLabels,
) -> StepOutcome:
    """One gated tool call per item, at most ``concurrency`` at once; each item's result is
    ``{"status", "output", "error"}`` and carries the labels of the tool's output."""
    items = list(state[node.over] or [])
    step = node.item_tool()
    read = plan.labels_read(name, labels)
    slots = asyncio.Semaphore(node.concurrency)

    async def branch(index: int, item: object) -> ToolReply:
        scope = {**state, "item": item, "index": index}
        args = {k: expression(scope) for k, expression in plan.arguments(name).items()}
        carried = sorted({*read, *labels.found_in(json.dumps(args, ensure_ascii=False, default=str))})
        async with slots:
            return await executor.call_tool(
                ToolCall(step=ctx.part(index), tool=step.tool, args=args, labels=carried), step
            )

    replies = await asyncio.gather(*(branch(i, item) for i, item in enumerate(items, start=1)))
    results = [
        {"status": "refused", "output": None, "error": f"{r.error.kind}: {r.error.message}"}
        if r.error is not None
        else {"status": "completed", "output": r.output, "error": None}
        for r in replies
    ]
    updates = {node.write: results}
    produced = sorted({label for r in replies if r.error is None for ls in r.labels.values() for label in ls})
    field_labels, sensitive = plan.labelled(updates, {node.write: sorted({*read, *produced})})
    for r in replies:
        if r.error is None:
            for label, found in labelled_values(r.output, r.labels).items():
                sensitive.setdefault(label, []).extend(found)
    statuses = [str(r["status"]) for r in results]
    counts = ", ".join(f"{statuses.count(s)} {s}" for s in sorted(set(statuses)))
    return StepOutcome(
        node=name,
        updates=updates,
        next=plan.route(name, plan.merge(state, updates)),
        routing=[f"tool {step.tool} × {len(items)}: {counts}"],
        labels=field_labels,
        sensitive=sensitive,
    )
