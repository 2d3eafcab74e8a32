"""Static safety checks of a graph against the tools and models it will run with.

Run when a graph is loaded with a tool registry, before any run starts:

- an agent whose toolset holds an ``irreversible`` tool is an error unless the policy bounds
  that tool's action: the model picks when and how often to call it, so no approval node
  placed before the agent can stand for every call (the gate's approval policies can);
- a map over an ``irreversible`` tool is an error on the same terms: it calls the tool once
  per item, and one approval before it cannot stand for each call;
- a child graph (subgraph, map) is reviewed like its parent;
- an ``irreversible`` tool step is an error unless, on every path that reaches it, someone
  approved since the start or since that step's last call — or its action is one the
  deployment's policy bounds (every permit of it limits ``context.amount*`` or asks for an
  approval; the caller passes those actions as ``bounded``). The walk is over (node, approved
  since the step's last call) pairs, so an approval's ``on_reject``/``on_changes`` exits, an
  approval that a timeout grants (``default: approve``), and a loop back to the step all count
  as paths without approval;
- a labelled field that can flow into a model not trusted with the label is a warning: the
  gate will mask the data or skip that model at run time, which the author should expect.

Labels are followed the way runs follow them (see :mod:`agents.labels`), over every path at
once: a field may carry the labels of anything any node could write into it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterator
from typing import Literal

from chamberlain.agents._exceptions import SpecIssue
from chamberlain.agents._labels import labels_read
from chamberlain.agents._models import ModelRegistry, RegisteredModel
from chamberlain.agents._plan import GraphPlan, declassified
from chamberlain.agents._spec import (
    AgentNode,
    ApprovalNode,
    Branch,
    ClassifyNode,
    EndNode,
    GraphSpec,
    MapNode,
    ModelNode,
    Tier,
    ToolNode,
    model_or_tier,
)
from chamberlain.agents._validation import successors
from chamberlain.tools._adapter import Effect
from chamberlain.tools._registry import ToolRegistry


def review_graph(
    spec: GraphSpec, tools: ToolRegistry, models: ModelRegistry | None = None, bounded: Collection[str] = ()
) -> list[SpecIssue]:
    """Errors (``severity="error"``) and warnings about what ``spec`` could do with these tools and models."""
    children = [
        SpecIssue(i.message, ("graphs", name, *i.path), suggestion=i.suggestion, severity=i.severity)
        for name, child in spec.graphs.items()
        for i in review_graph(child, tools, models, bounded)
    ]
    return [
        *_unapproved_irreversible(spec, tools, bounded),
        *_unbounded_agents(spec, tools, bounded),
        *_unbounded_maps(spec, tools, bounded),
        *_untrusted_flows(spec, tools, models),
        *children,
    ]


def _unbounded_agents(spec: GraphSpec, tools: ToolRegistry, bounded: Collection[str]) -> Iterator[SpecIssue]:
    for name, node in spec.nodes.items():
        if not isinstance(node, AgentNode):
            continue
        for i, tool in enumerate(node.tools):
            adapter = tools.get(tool)
            if adapter is None or adapter.effect is not Effect.IRREVERSIBLE or adapter.policy_action in bounded:
                continue
            yield SpecIssue(
                f"agent '{name}' may call irreversible tool '{tool}' as often as its model chooses, and no policy "
                f"bounds {adapter.policy_action} (an approval or a limit on context.amount in every permit)",
                ("nodes", name, "tools", i),
                suggestion=f"permit {adapter.policy_action} in Cedar only with @approvers or under an amount limit, "
                "or take the tool out of the agent and call it from a tool node after an approval",
            )


def _unbounded_maps(spec: GraphSpec, tools: ToolRegistry, bounded: Collection[str]) -> Iterator[SpecIssue]:
    for name, node in spec.nodes.items():
        if not (isinstance(node, MapNode) and node.tool is not None and node.tool in tools):
            continue
        adapter = tools[node.tool]
        if adapter.effect is not Effect.IRREVERSIBLE or adapter.policy_action in bounded:
            continue
        yield SpecIssue(
            f"map '{name}' calls irreversible tool '{node.tool}' once per item of '{node.over}', and no policy "
            f"bounds {adapter.policy_action} (an approval or a limit on context.amount in every permit)",
            ("nodes", name, "tool"),
            suggestion=f"permit {adapter.policy_action} in Cedar only with @approvers or under an amount limit, "
            "so the gate asks for each item",
        )


def _unapproved_irreversible(spec: GraphSpec, tools: ToolRegistry, bounded: Collection[str]) -> Iterator[SpecIssue]:
    for name, node in spec.nodes.items():
        if not (isinstance(node, ToolNode) and node.tool in tools):
            continue
        adapter = tools[node.tool]
        if adapter.effect is not Effect.IRREVERSIBLE or adapter.policy_action in bounded:
            continue
        if path := _unapproved_path(spec, name):
            yield SpecIssue(
                f"node '{name}' calls irreversible tool '{node.tool}' on a path with no approval since the start or "
                f"its last call ({' → '.join(path)}), and no policy bounds {adapter.policy_action}",
                ("nodes", name, "tool"),
                suggestion="put an approval node (default: reject) right before it, or permit this action in Cedar "
                "only under a limit on context.amount",
            )


State = tuple[str, bool]
"""A node, and whether an approval was given since the watched step's last call."""


def _unapproved_path(spec: GraphSpec, step: str) -> list[str] | None:
    """The shortest walk from the start that reaches ``step`` with no approval since the start or
    the step's previous call — as node names, each approval annotated with the exit it took."""
    start: State = (spec.start, False)
    came_from: dict[State, tuple[State, str] | None] = {start: None}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        name, approved = state
        if name == step and not approved:
            return _walk(came_from, state)
        for target, exit_label, still_approved in _exits(spec, name, approved and name != step):
            if (target, still_approved) not in came_from:
                came_from[(target, still_approved)] = (state, exit_label)
                queue.append((target, still_approved))
    return None


def _exits(spec: GraphSpec, name: str, approved: bool) -> Iterator[tuple[str, str, bool]]:
    """Where a run can go from node ``name``: (target, how it left, approved after)."""
    node = spec.nodes.get(name)
    if node is None or isinstance(node, EndNode):
        return
    if not isinstance(node, ApprovalNode):
        for target in successors(node):
            yield target, "", approved
        return
    exits: list[tuple[str | None, Literal["approve", "reject", "changes"]]] = [
        *((b if isinstance(b, str) else b.to, "approve") for b in _as_list(node.next)),
        (node.on_reject, "reject"),
        (node.on_changes or node.on_reject, "changes"),
    ]
    for to, outcome in exits:
        if to is None:
            continue
        if outcome != "approve":
            yield to, outcome, approved
        elif node.default == "approve":
            yield to, "approved by its timeout", approved  # nobody may have looked
        else:
            yield to, "", True


def _as_list(next_: str | list[Branch] | None) -> list[str | Branch]:
    return [next_] if isinstance(next_, str) else list(next_ or [])


def _walk(came_from: dict[State, tuple[State, str] | None], state: State) -> list[str]:
    steps = [state[0]]
    while (previous := came_from[state]) is not None:
        state, exit_label = previous
        steps.append(f"{state[0]} ({exit_label})" if exit_label else state[0])
    return steps[::-1]


def _untrusted_flows(spec: GraphSpec, tools: ToolRegistry, models: ModelRegistry | None) -> Iterator[SpecIssue]:
    if models is None:
        return
    plan = GraphPlan(spec)
    labels = possible_labels(plan, tools)
    for name, node in spec.nodes.items():
        if not isinstance(node, ModelNode | ClassifyNode | AgentNode):
            continue
        carried: dict[str, list[str]] = {}
        for f in sorted(plan.reads(name)):
            for label in labels[f]:
                carried.setdefault(label, []).append(f)
        for tool in node.tools if isinstance(node, AgentNode) else []:  # results join the conversation
            for label in sorted({lb for ls in (tools[tool].labels.values() if tool in tools else []) for lb in ls}):
                carried.setdefault(label, []).append(f"{tool}'s results")
        for model in _candidates(node, models):
            for label, fields in sorted(carried.items()):
                if label not in model.trust or (label == "pii" and model.tier is Tier.EXTERNAL):
                    where = "external " if model.tier is Tier.EXTERNAL else ""
                    yield SpecIssue(
                        f"node '{name}' may send {label} data (from {', '.join(fields)}) to {where}model "
                        f"'{model.name}', which is not trusted with it: the gate will mask it or skip the model",
                        ("nodes", name),
                        severity="warning",
                    )


def possible_labels(plan: GraphPlan, tools: ToolRegistry) -> dict[str, set[str]]:
    """Every label each state field may carry on some path: declared, or flowed in."""
    labels = {f: set(declared) for f, declared in plan.declared.items()}
    changed = True
    while changed:
        changed = False
        for name in plan.spec.nodes:
            for target, incoming in _flows(plan, name, labels, tools):
                if target in labels and not incoming <= labels[target]:
                    labels[target] |= incoming
                    changed = True
    return labels


def _flows(
    plan: GraphPlan, name: str, labels: dict[str, set[str]], tools: ToolRegistry
) -> Iterator[tuple[str, set[str]]]:
    """Where node ``name``'s data can go: (field written, labels it may carry)."""
    node, reads = plan.node(name), plan.reads(name)

    def of(fields: Collection[str]) -> set[str]:
        return {label for f in fields for label in labels.get(f, ())}

    if isinstance(node, ModelNode):
        read = of(reads)
        for f in node.output or {}:
            if not declassified(node.output, f):
                yield f, read
        if node.write:
            yield node.write, read
    elif isinstance(node, AgentNode):
        read = of(reads) | {lb for t in node.tools if t in tools for ls in tools[t].labels.values() for lb in ls}
        for f in [*(node.output or {}), *([node.write] if node.write else [])]:
            if not declassified(node.output, f):
                yield f, read
    elif isinstance(node, MapNode) and node.tool is not None:  # each item's output, and what its arguments read
        produced = tools[node.tool].labels if node.tool in tools else {}
        yield node.write, of(reads) | {label for ls in produced.values() for label in ls}
    elif isinstance(node, ToolNode):
        produced = tools[node.tool].labels if node.tool in tools else {}
        for f, expression in plan.outputs(name).items():
            yield f, of(expression.names - {"result"}) | labels_read(expression, produced)
        if node.error:
            yield node.error, of(reads)


def _candidates(node: ModelNode | ClassifyNode | AgentNode, models: ModelRegistry) -> Iterator[RegisteredModel]:
    for candidate in node.cascade if isinstance(node, ClassifyNode) else node.candidates:
        if candidate == "human":
            continue
        model, tier = model_or_tier(candidate)
        try:
            yield models.resolve(model=model, tier=tier)
        except LookupError:
            continue  # the loader's own checks report unknown models
