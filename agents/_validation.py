"""Cross-reference checks of a graph spec: every name resolves, every node is reachable,
every run ends. All problems are collected, each with the path of the offending value, so
the loader can point at its line and an author fixes the whole file in one pass.

Given the adapters themselves (a :class:`~chamberlain.tools.ToolRegistry`) rather than only their
names, a tool node's ``args`` are checked against the adapter's input model and its ``output``
expressions against the output model; an output ``pattern`` is compiled by the engine that
validates model answers at run time, so what would crash a run fails the load instead."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Generator, Iterator, Mapping
from typing import Any

from langchain_core.prompts import PromptTemplate
from pydantic import BaseModel
from pydantic_core import SchemaError

from chamberlain.agents._composite_checks import agent_issues, child_issues
from chamberlain.agents._exceptions import ExpressionError, SpecIssue
from chamberlain.agents._expressions import Expression, compile_expression
from chamberlain.agents._models import output_model
from chamberlain.agents._spec import (
    AgentNode,
    ApprovalNode,
    Branch,
    ClassifyNode,
    EndNode,
    FieldType,
    FlowNode,
    GraphSpec,
    MapNode,
    ModelNode,
    Node,
    OutputField,
    RouteNode,
    SubgraphNode,
    ToolNode,
)
from chamberlain.tools._adapter import ToolAdapter

Path = tuple[str | int, ...]
Tools = Collection[str] | Mapping[str, ToolAdapter[Any, Any]]
"""What a graph is checked against: tool names, or the adapters (which also checks arguments and results)."""


def did_you_mean(name: str, known: Collection[str]) -> str | None:
    """The suggestion for a misspelt ``name``, if one of ``known`` is close."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def successors(node: Node) -> list[str]:
    """The nodes a node may hand over to."""
    if isinstance(node, EndNode):
        return []
    targets = [node.next] if isinstance(node.next, str) else [b.to for b in node.next or []]
    if isinstance(node, ApprovalNode):
        targets += [t for t in (node.on_reject, node.on_changes) if t]
    if isinstance(node, ToolNode) and node.on_error:
        targets.append(node.on_error)
    return targets


def validate_graph(spec: GraphSpec, tools: Tools | None = None) -> list[SpecIssue]:
    """Every problem in ``spec``; ``tools`` (adapter names, or the adapters) enables tool checks."""
    return list(_Checker(spec, tools).issues())


def _accepted(model: type[BaseModel]) -> set[str] | None:
    """The keys a model takes (names and aliases), or None when it takes any."""
    if model.model_config.get("extra") == "allow":
        return None
    return {key for name, f in model.model_fields.items() for key in (name, f.alias) if key}


class _Checker:
    def __init__(self, spec: GraphSpec, tools: Tools | None) -> None:
        self.spec = spec
        self.tools = tools
        self.fields = set(spec.state)

    def issues(self) -> Iterator[SpecIssue]:
        yield from self._node_ref(self.spec.start, ("start",))
        for name, node in self.spec.nodes.items():
            yield from self._node(name, node, ("nodes", name))
        if not any(isinstance(n, EndNode) for n in self.spec.nodes.values()):
            yield SpecIssue("graph has no end node", ("nodes",), suggestion="add a node with 'type: end'")
            return
        if self.spec.start in self.spec.nodes:
            yield from self._shape()
        budget = self.spec.budget
        if budget and budget.on_exceeded == "escalate" and not budget.approvers:
            yield SpecIssue("a budget that escalates needs 'approvers'", ("budget", "on_exceeded"))

    # -- one node -------------------------------------------------------------------------

    def _node(self, name: str, node: Node, path: Path) -> Iterator[SpecIssue]:
        if not isinstance(node, EndNode):
            yield from self._next(name, node, path)
        match node:
            case ModelNode():
                yield from self._model(name, node, path)
            case ToolNode():
                yield from self._tool(name, node, path)
            case ClassifyNode():
                yield from self._field_ref(node.input, (*path, "input"), "classify reads")
                yield from self._field_ref(node.write, (*path, "write"), "classify writes")
                if node.margin is not None:
                    yield from self._field_ref(node.margin, (*path, "margin"), "classify writes", FieldType.FLOAT)
                yield from self._cascade(name, node.cascade, node.human, path)
            case ApprovalNode():
                for key in ("on_reject", "on_changes"):
                    if target := getattr(node, key):
                        yield from self._node_ref(target, (*path, key))
                for field, declared in (node.output or {}).items():
                    yield from self._field_ref(field, (*path, "output", field), "output writes")
                    if declared.pattern is not None:
                        yield from self._pattern(field, declared, (*path, "output", field, "pattern"))
            case AgentNode():
                yield from agent_issues(self.spec, name, node, self.tools, path)
            case SubgraphNode() | MapNode():
                yield from child_issues(self.spec, name, node, self.tools, path, validate_graph)
            case EndNode(output=list(fields)):
                for i, f in enumerate(fields):
                    yield from self._field_ref(f, (*path, "output", i), f"end node '{name}' returns")

    def _next(self, name: str, node: FlowNode, path: Path) -> Iterator[SpecIssue]:
        match node.next:
            case None:
                yield SpecIssue(f"node '{name}' has no 'next'", path, suggestion="name the node that follows it")
            case str(target):
                if isinstance(node, RouteNode):
                    yield SpecIssue(f"route '{name}' needs a list of branches in 'next'", (*path, "next"))
                yield from self._node_ref(target, (*path, "next"))
            case list(branches):
                yield from self._branches(name, branches, (*path, "next"))

    def _branches(self, name: str, branches: list[Branch], path: Path) -> Iterator[SpecIssue]:
        for i, branch in enumerate(branches):
            yield from self._node_ref(branch.to, (*path, i, "to"))
            if branch.when is not None:
                yield from self._expression(branch.when, (*path, i, "when"), self.fields)
        if not branches or branches[-1].when is not None:
            yield SpecIssue(
                f"node '{name}' has no default branch",
                path,
                suggestion="end the list with a branch that has no 'when'",
            )

    def _model(self, name: str, node: ModelNode, path: Path) -> Iterator[SpecIssue]:
        try:
            variables = PromptTemplate.from_template(node.prompt).input_variables
        except ValueError as exc:
            yield SpecIssue(f"prompt of '{name}' is not a valid template: {exc}", (*path, "prompt"))
            variables = []
        for variable in variables:
            yield from self._field_ref(variable, (*path, "prompt"), "prompt uses")
        if node.tier and node.model:
            yield SpecIssue(f"model node '{name}' names both a tier and a model", (*path, "model"))
        if node.messages is not None:
            yield from self._field_ref(node.messages, (*path, "messages"), "messages come from", FieldType.MESSAGES)
        if node.output is None and node.write is None:
            yield SpecIssue(f"model node '{name}' writes nothing", path, suggestion="add 'output' or 'write'")
        for field, declared in (node.output or {}).items():
            yield from self._field_ref(field, (*path, "output", field), "output writes")
            if declared.pattern is not None:
                yield from self._pattern(field, declared, (*path, "output", field, "pattern"))
        if node.write is not None:
            yield from self._field_ref(node.write, (*path, "write"), "write targets")
        yield from self._cascade(name, node.cascade, node.human, path)

    def _cascade(self, name: str, cascade: list[str], human: list[str], path: Path) -> Iterator[SpecIssue]:
        if "human" in cascade[:-1]:
            yield SpecIssue(f"'human' must come last in the cascade of '{name}'", (*path, "cascade"))
        if "human" in cascade and not human:
            yield SpecIssue(
                f"node '{name}' escalates to a human but names no 'human' roles",
                (*path, "cascade"),
                suggestion="add 'human: [role, ...]'",
            )

    def _pattern(self, field: str, declared: OutputField, path: Path) -> Iterator[SpecIssue]:
        try:
            output_model({field: declared})
        except SchemaError as exc:
            reason = str(exc).strip().splitlines()[-1].removeprefix("error: ")
            message = f"pattern {declared.pattern!r} of output '{field}' is not a valid regular expression: {reason}"
            yield SpecIssue(message, path)

    def _tool(self, name: str, node: ToolNode, path: Path) -> Iterator[SpecIssue]:
        if self.tools is not None and node.tool not in self.tools:
            yield SpecIssue(
                f"node '{name}' uses unknown tool '{node.tool}'",
                (*path, "tool"),
                suggestion=did_you_mean(node.tool, self.tools),
            )
        known = isinstance(self.tools, Mapping) and node.tool in self.tools
        adapter = self.tools[node.tool] if isinstance(self.tools, Mapping) and known else None
        if adapter is not None:
            yield from self._arguments(name, node, adapter, path)
        for arg, source in node.args.items():
            yield from self._expression(source, (*path, "args", arg), self.fields)
        for field, source in node.output.items():
            yield from self._field_ref(field, (*path, "output", field), "output writes")
            expression = yield from self._expression(source, (*path, "output", field), {*self.fields, "result"})
            if adapter is not None and expression is not None:
                yield from self._result_refs(node.tool, expression, adapter.output_model, (*path, "output", field))
        if node.on_error is not None:
            yield from self._node_ref(node.on_error, (*path, "on_error"))
        if node.error is not None:
            yield from self._field_ref(node.error, (*path, "error"), "error goes to")

    def _arguments(self, name: str, node: ToolNode, adapter: ToolAdapter[Any, Any], path: Path) -> Iterator[SpecIssue]:
        model = adapter.input_model
        accepted = _accepted(model)
        takes = ", ".join(sorted(accepted or ())) or "nothing"
        for arg in [a for a in node.args if a not in accepted] if accepted is not None else []:
            yield SpecIssue(
                f"node '{name}' passes argument '{arg}', which tool '{node.tool}' does not take",
                (*path, "args", arg),
                suggestion=did_you_mean(arg, accepted or ()) or f"it takes: {takes}",
            )
        for key, f in model.model_fields.items():
            if f.is_required() and key not in node.args and (f.alias or key) not in node.args:
                yield SpecIssue(
                    f"node '{name}' does not pass '{f.alias or key}', which tool '{node.tool}' requires",
                    (*path, "args") if node.args else path,
                    suggestion=f"add '{f.alias or key}: <expression>' under 'args'",
                )

    def _result_refs(
        self, tool: str, expression: Expression, model: type[BaseModel], path: Path
    ) -> Iterator[SpecIssue]:
        returned = _accepted(model)
        if returned is None:
            return
        for member in sorted(expression.members):
            base, _, key = member.partition(".")
            if base == "result" and key and key not in returned:
                yield SpecIssue(
                    f"expression {expression.source!r} reads 'result.{key}', but tool '{tool}' returns no '{key}'",
                    path,
                    suggestion=did_you_mean(key, returned) or f"it returns: {', '.join(sorted(returned))}",
                )

    # -- references -----------------------------------------------------------------------

    def _node_ref(self, target: str, path: Path) -> Iterator[SpecIssue]:
        if target not in self.spec.nodes:
            yield SpecIssue(f"unknown node '{target}'", path, suggestion=did_you_mean(target, self.spec.nodes))

    def _field_ref(self, field: str, path: Path, what: str, required: FieldType | None = None) -> Iterator[SpecIssue]:
        if field not in self.fields:
            yield SpecIssue(
                f"{what} unknown state field '{field}'",
                path,
                suggestion=did_you_mean(field, self.fields) or f"declare '{field}' under 'state'",
            )
        elif required and self.spec.state[field].type is not required:
            yield SpecIssue(f"{what} '{field}', which is not of type {required.value}", path)

    def _expression(self, source: str, path: Path, names: set[str]) -> Generator[SpecIssue, None, Expression | None]:
        """The problems of one expression; returns the compiled expression, if it compiles."""
        try:
            expression = compile_expression(source)
        except ExpressionError as exc:
            yield SpecIssue(str(exc), path)
            return None
        for unknown in sorted(expression.names - names):
            yield SpecIssue(
                f"expression {source!r} reads unknown state field '{unknown}'",
                path,
                suggestion=did_you_mean(unknown, names),
            )
        return expression

    # -- the graph's shape ----------------------------------------------------------------

    def _shape(self) -> Iterator[SpecIssue]:
        graph = {name: [t for t in successors(n) if t in self.spec.nodes] for name, n in self.spec.nodes.items()}
        reachable = _reach(graph, [self.spec.start])
        for name in self.spec.nodes:
            if name not in reachable:
                yield SpecIssue(f"node '{name}' is unreachable from '{self.spec.start}'", ("nodes", name))
        ends = [n for n, node in self.spec.nodes.items() if isinstance(node, EndNode)]
        reverse: dict[str, list[str]] = {n: [] for n in graph}
        for source, targets in graph.items():
            for target in targets:
                reverse[target].append(source)
        can_end = _reach(reverse, ends)
        for name in sorted(reachable - can_end):
            yield SpecIssue(f"node '{name}' can never reach an end node", ("nodes", name))
        cycle = _find_cycle(graph, self.spec.start)
        if cycle and self.spec.max_steps is None:
            yield SpecIssue(
                f"cycle {' → '.join(cycle)} is unbounded",
                ("nodes", cycle[0]),
                suggestion="set 'max_steps' on the graph",
            )


def _reach(graph: dict[str, list[str]], roots: list[str]) -> set[str]:
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(graph.get(node, []))
    return seen


def _find_cycle(graph: dict[str, list[str]], start: str) -> list[str] | None:
    """A cycle reachable from ``start`` as a closed path of node names, or None."""
    path: list[str] = []
    on_path: set[str] = set()
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for target in graph[node]:
            if target in on_path:
                return [*path[path.index(target) :], target]
            if target not in done and (found := visit(target)):
                return found
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    return visit(start)
