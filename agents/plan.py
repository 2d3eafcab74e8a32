"""A graph spec compiled for execution: the semantics both engines share.

``GraphPlan`` renders prompts, evaluates argument mappings, applies state updates and
routes — all deterministic, so it runs inside a Temporal workflow as well as inside a
LangGraph node. Effects go through a :class:`~agents.steps.StepExecutor`, which is the
only thing that differs between the in-process runner and the durable one.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, message_to_dict
from langchain_core.prompts import PromptTemplate
from pydantic import BaseModel, TypeAdapter, ValidationError

from agents.exceptions import ExpressionError
from agents.expressions import Expression, compile_expression
from agents.loader import check_graph
from agents.messages import to_message, to_messages
from agents.spec import ApprovalNode, EndNode, FieldType, GraphSpec, ModelNode, Node, RouteNode, ToolNode
from agents.steps import (
    ApprovalRequest,
    ModelCall,
    ModelReply,
    StepContext,
    StepExecutor,
    TokenUsage,
    ToolCall,
)

State = dict[str, Any]


class StepOutcome(BaseModel):
    """What one node did: the state updates it made and where the run goes next
    (``None``: the run ends, at an end node or on a rejected approval)."""

    node: str
    updates: dict[str, Any]
    next: str | None
    model: str | None = None
    usage: TokenUsage | None = None
    decision: Literal["approve", "reject"] | None = None


class RunOutcome(BaseModel):
    status: Literal["completed", "rejected"]
    end: str | None
    output: dict[str, Any]
    steps: int


class GraphPlan:
    """Compile once (expressions, templates), then execute steps against any executor."""

    def __init__(self, spec: GraphSpec) -> None:
        self.spec = check_graph(spec)
        self._routes: dict[str, list[tuple[Expression | None, str]]] = {}
        self._args: dict[str, dict[str, Expression]] = {}
        self._outputs: dict[str, dict[str, Expression]] = {}
        self._prompts: dict[str, tuple[PromptTemplate, PromptTemplate | None]] = {}
        for name, node in spec.nodes.items():
            if not isinstance(node, EndNode) and isinstance(node.next, list):
                self._routes[name] = [(compile_expression(b.when) if b.when else None, b.to) for b in node.next]
            if isinstance(node, ToolNode):
                self._args[name] = {k: compile_expression(v) for k, v in node.args.items()}
                self._outputs[name] = {k: compile_expression(v) for k, v in node.output.items()}
            if isinstance(node, ModelNode):
                system = PromptTemplate.from_template(node.system) if node.system else None
                self._prompts[name] = (PromptTemplate.from_template(node.prompt), system)

    @property
    def start(self) -> str:
        return self.spec.start

    @property
    def max_steps(self) -> int:
        """The bound on nodes walked; an acyclic graph cannot walk more than its nodes."""
        return self.spec.max_steps or len(self.spec.nodes)

    def node(self, name: str) -> Node:
        return self.spec.nodes[name]

    def is_message_field(self, name: str) -> bool:
        return self.spec.state[name].type is FieldType.MESSAGES

    # -- state -----------------------------------------------------------------------------

    def initial_state(self, values: dict[str, Any]) -> State:
        """Defaults overlaid with ``values``; an unknown field is an error naming it."""
        unknown = sorted(set(values) - set(self.spec.state))
        if unknown:
            raise ValueError(f"input field(s) {', '.join(unknown)} not in the state of graph '{self.spec.name}'")
        state: State = {}
        for name, field in self.spec.state.items():
            value = values.get(name, copy.deepcopy(field.default))
            if self.is_message_field(name):
                state[name] = [_message_dict(m) for m in value or []]
                continue
            try:
                state[name] = _FIELD_TYPES[field.type].validate_python(value)
            except ValidationError as exc:
                raise ValueError(f"state field '{name}' of graph '{self.spec.name}': {exc.errors()[0]['msg']}") from exc
        return state

    def merge(self, state: State, updates: dict[str, Any]) -> State:
        """Apply updates: message fields append, every other field is replaced."""
        merged = dict(state)
        for name, value in updates.items():
            merged[name] = [*(state.get(name) or []), *value] if self.is_message_field(name) else value
        return merged

    def route(self, name: str, state: State) -> str | None:
        node = self.node(name)
        if isinstance(node, EndNode):
            return None
        if isinstance(node.next, str):
            return node.next
        for condition, target in self._routes[name]:
            if condition is None or condition(state):
                return target
        raise ExpressionError(f"no branch of node '{name}' matched")  # unreachable: a default is required

    def output(self, end: str | None, state: State) -> dict[str, Any]:
        node = self.node(end) if end else None
        fields = node.output if isinstance(node, EndNode) and node.output else list(state)
        return {f: state[f] for f in fields}

    # -- one step --------------------------------------------------------------------------

    async def step(self, name: str, state: State, executor: StepExecutor, ctx: StepContext) -> StepOutcome:
        """Execute node ``name`` on ``state`` and decide where to go next."""
        node = self.node(name)
        match node:
            case ModelNode():
                reply = await executor.call_model(self.model_call(name, state, ctx), node)
                updates = self.model_updates(node, reply)
                return StepOutcome(
                    node=name,
                    updates=updates,
                    next=self.route(name, self.merge(state, updates)),
                    model=reply.model,
                    usage=reply.usage,
                )
            case ToolNode():
                args = {arg: expression(state) for arg, expression in self._args[name].items()}
                tool_reply = await executor.call_tool(ToolCall(step=ctx, tool=node.tool, args=args), node)
                scope = {**state, "result": tool_reply.output}
                updates = {f: expression(scope) for f, expression in self._outputs[name].items()}
                return StepOutcome(node=name, updates=updates, next=self.route(name, self.merge(state, updates)))
            case ApprovalNode():
                request = ApprovalRequest(
                    step=ctx,
                    ask=PromptTemplate.from_template(node.ask).format(**_prompt_values(state)),
                    approvers=node.approvers,
                    escalate_to=node.escalate_to,
                )
                decision = await executor.request_approval(request, node)
                target = self.route(name, state) if decision.outcome == "approve" else node.on_reject
                return StepOutcome(node=name, updates={}, next=target, decision=decision.outcome)
            case RouteNode():
                return StepOutcome(node=name, updates={}, next=self.route(name, state))
            case EndNode():
                return StepOutcome(node=name, updates={}, next=None)
        raise TypeError(f"unknown node type {type(node).__name__}")  # pragma: no cover

    def model_call(self, name: str, state: State, ctx: StepContext) -> ModelCall:
        node = self.node(name)
        assert isinstance(node, ModelNode)
        prompt, system = self._prompts[name]
        values = _prompt_values(state)
        messages: list[BaseMessage] = [SystemMessage(system.format(**values))] if system else []
        if node.messages:
            messages += to_messages(state[node.messages])
        messages.append(HumanMessage(prompt.format(**values)))
        return ModelCall(step=ctx, messages=messages, tier=node.tier, model=node.model, output=node.output)

    def model_updates(self, node: ModelNode, reply: ModelReply) -> dict[str, Any]:
        updates = dict(reply.structured or {})
        if node.write is not None:
            message: AIMessage = reply.message  # type: ignore[assignment]
            updates[node.write] = [message_to_dict(message)] if self.is_message_field(node.write) else message.text
        return updates


_FIELD_TYPES: dict[FieldType, TypeAdapter[Any]] = {
    FieldType.STR: TypeAdapter(str | None),
    FieldType.INT: TypeAdapter(int | None),
    FieldType.FLOAT: TypeAdapter(float | None),
    FieldType.BOOL: TypeAdapter(bool | None),
    FieldType.LIST: TypeAdapter(list[Any] | None),
    FieldType.DICT: TypeAdapter(dict[str, Any] | None),
    FieldType.ANY: TypeAdapter(Any),
}


def _prompt_values(state: State) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str) for k, v in state.items()}


def _message_dict(value: Any) -> dict[str, Any]:
    return message_to_dict(HumanMessage(value) if isinstance(value, str) else to_message(value))
