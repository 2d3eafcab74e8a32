"""Nodes that run other graphs: a subgraph once, a map once per item of a list.

Each child run is a :class:`~agents.steps.GraphCall` through the executor — a child workflow
in the durable engine, a nested run in-process — whose step ID (``node/visit`` for a
subgraph, ``node/visit/item`` for a map's item) becomes the child's run ID suffix, so its
tool calls get their own idempotency keys and its approvals are its own. The child acts for
the same principal, knows the parent's labels, and carries the parent's grant, which the
gate holds its own grant within.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from chamberlain.agents._labels import DataLabels
from chamberlain.agents._outcomes import StepOutcome
from chamberlain.agents._spec import MapNode, SubgraphNode
from chamberlain.agents._state import State
from chamberlain.agents._steps import GraphCall, GraphReply, StepContext, StepExecutor, TokenUsage

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
    items = list(state[node.over] or [])
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
