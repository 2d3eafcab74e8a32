"""Load-time checks of the nodes that choose or delegate: agent, subgraph, map (over a graph or a tool).

An agent's toolset is a subset of its graph's grant (given the adapters, each tool's Cedar
action must be granted); a child graph's grant is within its parent's — a child without a
grant under a parent with one would be granted everything, so it is refused too — and the
child graph passes every check its parent does. A map's tool is known, granted and given
only the arguments it takes, as a tool node's.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

from chamberlain.agents._exceptions import SpecIssue
from chamberlain.agents._spec import AgentNode, FieldType, GraphSpec, MapNode, SubgraphNode
from chamberlain.tools._adapter import ToolAdapter

Path = tuple[str | int, ...]
Tools = Collection[str] | Mapping[str, ToolAdapter[Any, Any]]


def _suggest(name: str, known: Collection[str]) -> str | None:
    from chamberlain.agents._validation import did_you_mean

    return did_you_mean(name, known)


def agent_issues(spec: GraphSpec, name: str, node: AgentNode, tools: Tools | None, path: Path) -> Iterator[SpecIssue]:
    if node.output is None and node.write is None:
        yield SpecIssue(f"agent '{name}' has neither 'output' nor 'write'", path, suggestion="say where answers go")
    for field in [*(node.output or {}), *([node.write] if node.write else [])]:
        if field not in spec.state:
            fix = f"declare '{field}' under 'state'"
            yield SpecIssue(f"agent '{name}' writes unknown state field '{field}'", path, suggestion=fix)
    for i, tool in enumerate(node.tools):
        where = (*path, "tools", i)
        if tools is not None and tool not in tools:
            yield SpecIssue(f"agent '{name}' uses unknown tool '{tool}'", where, suggestion=_suggest(tool, tools))
            continue
        if spec.grant is None or not isinstance(tools, Mapping):
            continue
        action = tools[tool].policy_action
        if action not in spec.grant:
            yield SpecIssue(
                f"agent '{name}' has tool '{tool}' (action {action}) outside the graph's grant",
                where,
                suggestion=f"add {action} to 'grant' or remove the tool from the agent",
            )


def child_issues(
    spec: GraphSpec,
    name: str,
    node: SubgraphNode | MapNode,
    tools: Tools | None,
    path: Path,
    validate: Callable[[GraphSpec, Tools | None], list[SpecIssue]],
) -> Iterator[SpecIssue]:
    if isinstance(node, MapNode):
        for key, what in ((node.over, "over"), (node.write, "write")):
            declared = spec.state.get(key)
            if declared is None or declared.type not in (FieldType.LIST, FieldType.ANY):
                yield SpecIssue(f"map '{name}' {what} '{key}' must be a state field of type list", (*path, what))
        if node.tool is not None:
            yield from _map_tool_issues(spec, name, node, node.tool, tools, path)
            return
    assert node.graph is not None  # a map without a tool runs a graph (the spec holds it to one)
    child = spec.graphs.get(node.graph)
    if child is None:
        fix = _suggest(node.graph, spec.graphs) or "declare it under 'graphs'"
        yield SpecIssue(f"node '{name}' runs unknown graph '{node.graph}'", (*path, "graph"), suggestion=fix)
        return
    if spec.grant is not None:
        outside = sorted(set(child.grant or ["<everything: no grant>"]) - set(spec.grant))
        if outside:
            yield SpecIssue(
                f"graph '{node.graph}' of node '{name}' asks for {', '.join(outside)} outside the parent's grant",
                (*path, "graph"),
                suggestion="give the child graph a grant within its parent's",
            )
    for key in node.input:
        if key not in child.state:
            message = f"node '{name}' passes '{key}', not a state field of graph '{node.graph}'"
            yield SpecIssue(message, (*path, "input", key), suggestion=_suggest(key, child.state))
    for issue in validate(child, tools):
        yield SpecIssue(issue.message, ("graphs", node.graph, *issue.path), suggestion=issue.suggestion)


def _map_tool_issues(
    spec: GraphSpec, name: str, node: MapNode, tool: str, tools: Tools | None, path: Path
) -> Iterator[SpecIssue]:
    """A map's tool: known, within the grant, and given only arguments it takes."""
    if tools is not None and tool not in tools:
        yield SpecIssue(f"map '{name}' uses unknown tool '{tool}'", (*path, "tool"), suggestion=_suggest(tool, tools))
        return
    if not isinstance(tools, Mapping):
        return
    adapter = tools[tool]
    if spec.grant is not None and adapter.policy_action not in spec.grant:
        yield SpecIssue(
            f"map '{name}' calls tool '{tool}' (action {adapter.policy_action}) outside the graph's grant",
            (*path, "tool"),
            suggestion=f"add {adapter.policy_action} to 'grant'",
        )
    model = adapter.input_model
    if model.model_config.get("extra") == "allow":
        return
    accepted = {key for field_name, f in model.model_fields.items() for key in (field_name, f.alias) if key}
    for arg in node.input:
        if arg not in accepted:
            yield SpecIssue(
                f"map '{name}' passes argument '{arg}', which tool '{tool}' does not take",
                (*path, "input", arg),
                suggestion=_suggest(arg, accepted) or f"it takes: {', '.join(sorted(accepted)) or 'nothing'}",
            )
    for key, f in model.model_fields.items():
        if f.is_required() and key not in node.input and (f.alias or key) not in node.input:
            yield SpecIssue(
                f"map '{name}' does not pass '{f.alias or key}', which tool '{tool}' requires",
                (*path, "input"),
                suggestion=f"add it to 'input', e.g. {f.alias or key}: item.{f.alias or key}",
            )
