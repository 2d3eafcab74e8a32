"""Static safety checks of a graph against the tools and models it will run with.

Run when a graph is loaded with a tool registry, before any run starts:

- an ``irreversible`` tool reachable from the start without passing an approval node is an
  error — unless its action is one the deployment's policy bounds (a Cedar condition such as
  an amount limit decides every call; the caller passes those actions as ``bounded``);
- a labelled field that can flow into a model not trusted with the label is a warning: the
  gate will mask the data or skip that model at run time, which the author should expect.

Labels are followed the way runs follow them (see :mod:`agents.labels`), over every path at
once: a field may carry the labels of anything any node could write into it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterator

from chamberlain.agents.exceptions import SpecIssue
from chamberlain.agents.labels import labels_read
from chamberlain.agents.models import ModelRegistry, RegisteredModel
from chamberlain.agents.plan import GraphPlan, declassified
from chamberlain.agents.spec import ApprovalNode, ClassifyNode, GraphSpec, ModelNode, Tier, ToolNode, model_or_tier
from chamberlain.agents.validation import successors
from chamberlain.tools.adapter import Effect
from chamberlain.tools.registry import ToolRegistry


def review_graph(
    spec: GraphSpec, tools: ToolRegistry, models: ModelRegistry | None = None, bounded: Collection[str] = ()
) -> list[SpecIssue]:
    """Errors (``severity="error"``) and warnings about what ``spec`` could do with these tools and models."""
    return [*_unapproved_irreversible(spec, tools, bounded), *_untrusted_flows(spec, tools, models)]


def _unapproved_irreversible(spec: GraphSpec, tools: ToolRegistry, bounded: Collection[str]) -> Iterator[SpecIssue]:
    came_from: dict[str, str | None] = {spec.start: None}
    queue = deque([spec.start])
    while queue:  # breadth first, never through an approval node: the shortest unapproved paths
        name = queue.popleft()
        node = spec.nodes.get(name)
        if node is None or isinstance(node, ApprovalNode):
            continue
        if isinstance(node, ToolNode) and node.tool in tools:
            adapter = tools[node.tool]
            if adapter.effect is Effect.IRREVERSIBLE and adapter.policy_action not in bounded:
                path = [name]
                while (previous := came_from[path[-1]]) is not None:
                    path.append(previous)
                yield SpecIssue(
                    f"node '{name}' calls irreversible tool '{node.tool}' on a path without an approval node "
                    f"({' → '.join(reversed(path))}), and no policy bounds {adapter.policy_action}",
                    ("nodes", name, "tool"),
                    suggestion="add an approval node before it, or a Cedar policy with a condition on this action",
                )
        for target in successors(node):
            if target not in came_from:
                came_from[target] = name
                queue.append(target)


def _untrusted_flows(spec: GraphSpec, tools: ToolRegistry, models: ModelRegistry | None) -> Iterator[SpecIssue]:
    if models is None:
        return
    plan = GraphPlan(spec)
    labels = possible_labels(plan, tools)
    for name, node in spec.nodes.items():
        if not isinstance(node, ModelNode | ClassifyNode):
            continue
        carried: dict[str, list[str]] = {}
        for f in sorted(plan.reads(name)):
            for label in labels[f]:
                carried.setdefault(label, []).append(f)
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
    elif isinstance(node, ToolNode):
        produced = tools[node.tool].labels if node.tool in tools else {}
        for f, expression in plan.outputs(name).items():
            yield f, of(expression.names - {"result"}) | labels_read(expression, produced)
        if node.error:
            yield node.error, of(reads)


def _candidates(node: ModelNode | ClassifyNode, models: ModelRegistry) -> Iterator[RegisteredModel]:
    for candidate in node.candidates if isinstance(node, ModelNode) else node.cascade:
        if candidate == "human":
            continue
        model, tier = model_or_tier(candidate)
        try:
            yield models.resolve(model=model, tier=tier)
        except LookupError:
            continue  # the loader's own checks report unknown models
