"""Write a graph in Python: typed state, one method per node kind, the same spec as YAML.

The state is a Pydantic model whose fields declare their classification labels::

    class Triage(BaseModel):
        message: Annotated[str, Labels("pii")]
        intent: str | None = None

    g = Graph("support-triage", state=Triage, grant=["shop.order.read"])
    g.model("classify", tier="edge", prompt="Message: {message}", output={"intent": {"enum": [...]}}, next="triage")
    g.route("triage", [When("intent == 'refund'", "lookup")], default="done")
    g.tool("lookup", tool="shop.order", args={"order_id": "order_id"}, next=[When("amount > 200", "ask"), "pay"])
    g.end("done")
    spec = g.build(tools=app.tools, review=app.review)

Conditions and argument mappings stay strings (the spec is data: it travels in Temporal
history and exports to YAML with :func:`~chamberlain.agents._loader.dump_graph`). ``build``
runs the checks :func:`~chamberlain.agents._loader.load_graph` runs; a problem points at the
line of the call that declared the node, the way a YAML error points at the file's line.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any, Union, get_args, get_origin

from langchain_core.messages import BaseMessage
from pydantic import BaseModel, ValidationError

from chamberlain.agents._exceptions import GraphSpecError, SpecIssue
from chamberlain.agents._loader import PathKey, Review, run_checks, spec_issue
from chamberlain.agents._spec import (
    AgentNode,
    ApprovalNode,
    Branch,
    Budget,
    ClassifyNode,
    EndNode,
    FieldType,
    GraphSpec,
    MapNode,
    ModelNode,
    OutputField,
    RouteNode,
    StateField,
    SubgraphNode,
    ToolNode,
)
from chamberlain.agents._validation import Tools

_SIMPLE_TYPES: dict[Any, FieldType] = {
    str: FieldType.STR,
    int: FieldType.INT,
    float: FieldType.FLOAT,
    bool: FieldType.BOOL,
    list: FieldType.LIST,
    dict: FieldType.DICT,
    Any: FieldType.ANY,
}


class Labels:
    """The classification labels of a state field's values: ``Annotated[str, Labels("pii")]``."""

    def __init__(self, *labels: str) -> None:
        self.labels = list(labels)

    def __repr__(self) -> str:
        return f"Labels({', '.join(map(repr, self.labels))})"


@dataclass(frozen=True)
class When:
    """A conditional edge: go ``to`` a node when the expression ``condition`` holds."""

    condition: str
    to: str


Next = str | Sequence[When | str]
"""Where a node goes: a node's name, or branches tried in order — the last a bare name, the default."""
Output = Mapping[str, OutputField | Mapping[str, Any]]


class Graph:
    """A graph under construction; :meth:`build` turns it into a checked :class:`GraphSpec`.

    ``start`` defaults to the first node declared. Every node method also takes the other keys
    of its kind in YAML (``timeout``, ``retry``, ``description``, ``cascade`` …) as keywords."""

    def __init__(
        self,
        name: str,
        *,
        state: type[BaseModel],
        start: str | None = None,
        description: str = "",
        version: str = "1",
        grant: Sequence[str] | None = None,
        max_steps: int | None = None,
        budget: Budget | None = None,
    ) -> None:
        self._where: dict[PathKey, tuple[str, int]] = {(): _caller(2)}
        self.state = state
        self._graph: dict[str, Any] = {"name": name, "description": description, "version": version}
        granted = list(grant) if grant is not None else None
        self._graph |= _given({"start": start, "grant": granted, "max_steps": max_steps, "budget": budget})
        self._nodes: dict[str, Any] = {}
        self._graphs: dict[str, GraphSpec] = {}

    def model(
        self,
        name: str,
        *,
        prompt: str,
        next: Next,
        tier: str | None = None,
        model: str | None = None,
        system: str | None = None,
        output: Output | None = None,
        write: str | None = None,
        **options: Any,
    ) -> Graph:
        """Ask a model; ``output`` fields are written to the state fields of the same names."""
        fields = {"prompt": prompt, "tier": tier, "model": model, "system": system, "output": output, "write": write}
        return self._add(ModelNode, name, {**_given(fields), "next": _next(next), **options})

    def classify(
        self,
        name: str,
        *,
        input: str,
        write: str,
        classes: Mapping[str, Sequence[str]],
        next: Next,
        margin: str | None = None,
        **options: Any,
    ) -> Graph:
        """Route by meaning: the class of the nearest exemplar of ``input`` is written to ``write``,
        its lead over the runner-up class to the state field ``margin`` (for routes on an unsure reading)."""
        fields = {"input": input, "write": write, "classes": {k: list(v) for k, v in classes.items()}}
        return self._add(ClassifyNode, name, {**fields, **_given({"margin": margin}), "next": _next(next), **options})

    def tool(
        self,
        name: str,
        *,
        tool: str,
        next: Next,
        args: Mapping[str, str] | None = None,
        output: Mapping[str, str] | None = None,
        on_error: str | None = None,
        error: str | None = None,
        **options: Any,
    ) -> Graph:
        """Call a tool; ``args`` and ``output`` values are expressions (``output`` also sees ``result``)."""
        fields = {"tool": tool, "args": args, "output": output, "on_error": on_error, "error": error}
        return self._add(ToolNode, name, {**_given(fields), "next": _next(next), **options})

    def route(self, name: str, branches: Sequence[When], *, default: str, **options: Any) -> Graph:
        """Choose the next node: the first branch whose condition holds, else ``default``."""
        return self._add(RouteNode, name, {"next": _next([*branches, default]), **options})

    def approval(
        self,
        name: str,
        *,
        ask: str,
        approvers: Sequence[str],
        next: Next,
        output: Output | None = None,
        on_reject: str | None = None,
        on_changes: str | None = None,
        **options: Any,
    ) -> Graph:
        """Wait for one of ``approvers``, who fill in the ``output`` fields; ``next`` follows approval,
        ``on_reject`` a refusal (``timeout``, ``escalate_to`` and the timeout's outcome ``default`` as in YAML)."""
        fields = {"ask": ask, "approvers": list(approvers), "output": output}
        fields |= {"on_reject": on_reject, "on_changes": on_changes}
        return self._add(ApprovalNode, name, {**_given(fields), "next": _next(next), **options})

    def agent(
        self,
        name: str,
        *,
        instructions: str,
        prompt: str,
        tools: Sequence[str],
        next: Next,
        output: Output | None = None,
        write: str | None = None,
        model: str | None = None,
        tier: str | None = None,
        **options: Any,
    ) -> Graph:
        """A model that chooses among ``tools`` turn by turn, every call through the gate
        (``bounds``, ``cascade`` as in YAML)."""
        fields = {"instructions": instructions, "prompt": prompt, "tools": list(tools), "output": output}
        fields |= {"write": write, "model": model, "tier": tier}
        return self._add(AgentNode, name, {**_given(fields), "next": _next(next), **options})

    def subgraph(
        self,
        name: str,
        *,
        graph: GraphSpec,
        next: Next,
        input: Mapping[str, str] | None = None,
        output: Mapping[str, str] | None = None,
    ) -> Graph:
        """Run ``graph`` as a child run; ``input`` and ``output`` map fields with expressions."""
        self._graphs[graph.name] = graph
        fields = {"graph": graph.name, "input": input, "output": output}
        return self._add(SubgraphNode, name, {**_given(fields), "next": _next(next)})

    def map(
        self,
        name: str,
        *,
        over: str,
        write: str,
        next: Next,
        graph: GraphSpec | None = None,
        tool: str | None = None,
        input: Mapping[str, str] | None = None,
        concurrency: int = 4,
        **options: Any,
    ) -> Graph:
        """Run ``graph`` — or call ``tool`` — once per item of ``over`` (``input`` sees ``item`` and
        ``index``: the child's fields, or the tool's arguments), results to ``write``. A tool map
        takes ``timeout`` and ``retry`` for each call, as a tool node does."""
        if graph is not None:
            self._graphs[graph.name] = graph
        fields: dict[str, Any] = {"over": over, "graph": graph.name if graph else None, "tool": tool}
        fields |= {"write": write, "input": input, "concurrency": concurrency}
        return self._add(MapNode, name, {**_given(fields), "next": _next(next), **options})

    def end(self, name: str, *, output: Sequence[str] | None = None, description: str = "") -> Graph:
        """Finish the run, returning the ``output`` state fields (default: all)."""
        fields = {"output": list(output) if output is not None else None, "description": description}
        return self._add(EndNode, name, _given(fields))

    def build(self, *, tools: Tools | None = None, review: Review | None = None) -> GraphSpec:
        """The checked spec; raises :class:`GraphSpecError` pointing at the calls to fix."""
        data = {**self._graph, "state": state_fields(self.state), "nodes": self._nodes, "graphs": self._graphs}
        data.setdefault("start", next(iter(self._nodes), ""))
        try:
            spec = GraphSpec.model_validate(data)
        except ValidationError as exc:
            raise GraphSpecError([self._locate(spec_issue(e)) for e in exc.errors()]) from exc
        return run_checks(spec, tools=tools, review=review, locate=self._locate)

    def _add(self, kind: type[BaseModel], name: str, fields: dict[str, Any]) -> Graph:
        where, path = _caller(3), ("nodes", name)
        if name in self._nodes:
            first = self._where[path]
            issue = SpecIssue(f"node '{name}' is declared twice (first at {first[0]}:{first[1]})", path)
            raise GraphSpecError([replace(issue, file=where[0], line=where[1])])
        node_type = kind.model_fields["type"].annotation
        try:
            self._nodes[name] = kind.model_validate({"type": get_args(node_type)[0], **fields})
        except ValidationError as exc:
            issues = [spec_issue({**e, "loc": (*path, *e["loc"])}) for e in exc.errors()]
            raise GraphSpecError([replace(i, file=where[0], line=where[1]) for i in issues]) from exc
        self._where[path] = where
        return self

    def _locate(self, issue: SpecIssue) -> SpecIssue:
        """Point at the call that declared the deepest part of ``issue.path`` (else at ``Graph(...)``)."""
        for size in range(len(issue.path), -1, -1):
            if (found := self._where.get(issue.path[:size])) is not None:
                return replace(issue, file=found[0], line=found[1])
        return issue


def state_fields(model: type[BaseModel]) -> dict[str, StateField]:
    """A graph's state fields from a Pydantic model: types, defaults, descriptions and :class:`Labels`."""
    fields: dict[str, StateField] = {}
    problems: list[SpecIssue] = []
    for name, info in model.model_fields.items():
        annotation, labels = _unwrap(info.annotation, info.metadata)
        kind = _field_type(annotation)
        if kind is None:
            problems.append(
                SpecIssue(
                    f"state field '{name}' of {model.__name__} has type {annotation!r}, which graph state cannot hold",
                    ("state", name),
                    suggestion="use str, int, float, bool, list, dict, Any or list[Message] (optionally | None)",
                )
            )
            continue
        default = info.get_default(call_default_factory=True, validated_data={})
        fields[name] = StateField(type=kind, default=default, labels=labels, description=info.description or "")
    if problems:
        raise GraphSpecError(problems)
    return fields


def _unwrap(annotation: Any, metadata: Sequence[Any]) -> tuple[Any, list[str]]:
    """The type without ``None`` and ``Annotated``, and the labels declared anywhere on it."""
    labels = [label for m in metadata if isinstance(m, Labels) for label in m.labels]
    while True:
        if get_origin(annotation) is Annotated:
            annotation, *extra = get_args(annotation)
            labels += [label for m in extra if isinstance(m, Labels) for label in m.labels]
        elif get_origin(annotation) in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation, labels
            annotation = members[0]
        else:
            return annotation, list(dict.fromkeys(labels))


def _field_type(annotation: Any) -> FieldType | None:
    origin = get_origin(annotation) or annotation
    if origin is list:
        (item,) = get_args(annotation) or (Any,)
        item = _unwrap(item, ())[0]
        return FieldType.MESSAGES if isinstance(item, type) and issubclass(item, BaseMessage) else FieldType.LIST
    return _SIMPLE_TYPES.get(origin)


def _next(next: Next) -> str | list[Branch]:
    if isinstance(next, str):
        return next
    return [Branch(to=b) if isinstance(b, str) else Branch(when=b.condition, to=b.to) for b in next]


def _given(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The keys the caller set: the rest keep the spec's defaults (and stay out of exports)."""
    return {k: v for k, v in fields.items() if v is not None}


def _caller(depth: int) -> tuple[str, int]:
    """The file and line of the user's call into the builder, ``depth`` frames up from here."""
    frame = sys._getframe(depth)
    return frame.f_code.co_filename, frame.f_lineno
