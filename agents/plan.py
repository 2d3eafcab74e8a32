"""A graph spec compiled for execution: the semantics both engines share.

``GraphPlan`` renders prompts, evaluates argument mappings, applies state updates and
routes — all deterministic, so it runs inside a Temporal workflow as well as inside a
LangGraph node. Effects go through a :class:`~agents.steps.StepExecutor`, which is the
only thing that differs between the in-process runner and the durable one.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, message_to_dict
from langchain_core.prompts import PromptTemplate
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from chamberlain.agents.exceptions import ExpressionError, ModelOutputInvalid, StepFailed
from chamberlain.agents.expressions import Expression, compile_expression
from chamberlain.agents.labels import DataLabels, labels_read, strings_in
from chamberlain.agents.loader import check_graph
from chamberlain.agents.messages import to_message, to_messages
from chamberlain.agents.models import output_model, parse_output
from chamberlain.agents.spec import (
    ApprovalNode,
    ClassifyNode,
    EndNode,
    FieldType,
    GraphSpec,
    ModelNode,
    Node,
    OutputField,
    RouteNode,
    ToolNode,
    model_or_tier,
)
from chamberlain.agents.steps import (
    ApprovalRequest,
    ClassifyCall,
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
    cost: float = 0.0
    routing: list[str] = []
    decision: Literal["approve", "reject", "request_changes"] | None = None
    labels: dict[str, list[str]] = Field({}, description="the classification labels of each updated field")
    sensitive: dict[str, list[str]] = Field({}, exclude=True, description="the labelled values the step brought in")


@dataclass
class _Answer:
    """What a cascade produced, with every model's usage and every routing decision."""

    routing: list[str]
    values: dict[str, Any] = field(default_factory=dict)
    message: AIMessage | None = None
    model: str | None = None
    usage: TokenUsage = field(default_factory=TokenUsage)
    cost: float = 0.0

    def add(self, reply: ModelReply) -> None:
        self.usage = TokenUsage(
            input_tokens=self.usage.input_tokens + reply.usage.input_tokens,
            output_tokens=self.usage.output_tokens + reply.usage.output_tokens,
        )
        self.cost += reply.cost

    def outcome(self, name: str, updates: dict[str, Any], next: str | None, labels: _Labelled) -> StepOutcome:
        return StepOutcome(
            node=name, updates=updates, next=next, model=self.model, usage=self.usage, cost=self.cost,
            routing=self.routing, labels=labels[0], sensitive=labels[1],
        )  # fmt: skip


_Labelled = tuple[dict[str, list[str]], dict[str, list[str]]]  # a step's field labels, and its labelled values


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
        self._reads: dict[str, set[str]] = {}  # the state fields whose data a node sends out
        self.declared = {name: field.labels for name, field in spec.state.items()}
        for name, node in spec.nodes.items():
            if not isinstance(node, EndNode) and isinstance(node.next, list):
                self._routes[name] = [(compile_expression(b.when) if b.when else None, b.to) for b in node.next]
            if isinstance(node, ToolNode):
                self._args[name] = {k: compile_expression(v) for k, v in node.args.items()}
                self._reads[name] = {f for expression in self._args[name].values() for f in expression.names}
                self._outputs[name] = {k: compile_expression(v) for k, v in node.output.items()}
            if isinstance(node, ModelNode):
                system = PromptTemplate.from_template(node.system) if node.system else None
                self._prompts[name] = (PromptTemplate.from_template(node.prompt), system)
                read = {*self._prompts[name][0].input_variables, *(system.input_variables if system else [])}
                self._reads[name] = read | ({node.messages} if node.messages else set())
            if isinstance(node, ClassifyNode):
                self._reads[name] = {node.input}

    @property
    def start(self) -> str:
        return self.spec.start

    @property
    def max_steps(self) -> int:
        """The bound on nodes walked; an acyclic graph cannot walk more than its nodes."""
        return self.spec.max_steps or len(self.spec.nodes)

    def outputs(self, name: str) -> dict[str, Expression]:
        """A tool node's output mappings, compiled: state field → expression over state and ``result``."""
        return self._outputs.get(name, {})

    def reads(self, name: str) -> set[str]:
        """The state fields whose data node ``name`` sends out (to a model, a classifier or a tool)."""
        return set(self._reads.get(name, ()))

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
        for name, declared in self.spec.state.items():
            value = values.get(name, copy.deepcopy(declared.default))
            if self.is_message_field(name):
                state[name] = [_message_dict(m) for m in value or []]
                continue
            try:
                state[name] = _FIELD_TYPES[declared.type].validate_python(value)
            except ValidationError as exc:
                raise ValueError(f"state field '{name}' of graph '{self.spec.name}': {exc.errors()[0]['msg']}") from exc
        return state

    def initial_labels(self, state: State) -> DataLabels:
        """The labelled values of a run's input: the strings in its labelled fields."""
        return DataLabels().updated({}, _values({f: state[f] for f in state if self.declared[f]}, self.declared))

    def merge_labels(self, labels: DataLabels, outcome: StepOutcome) -> DataLabels:
        """Labels after a step: its fields' new labels (message fields keep their old messages'
        labels too) and the labelled values it brought in."""
        fields = {
            f: sorted({*ls, *labels.fields.get(f, ())}) if self.is_message_field(f) else ls
            for f, ls in outcome.labels.items()
        }
        return labels.updated(fields, outcome.sensitive)

    def merge(self, state: State, updates: dict[str, Any]) -> State:
        """Apply updates: message fields append, every other field is replaced."""
        merged = dict(state)
        for name, value in updates.items():
            merged[name] = [*(state.get(name) or []), *value] if self.is_message_field(name) else value
        return merged

    def over_budget(self, usage: TokenUsage, cost: float) -> str | None:
        """Why the run is over its budget, or None."""
        budget = self.spec.budget
        if budget is None:
            return None
        if budget.max_tokens is not None and (spent := usage.input_tokens + usage.output_tokens) > budget.max_tokens:
            return f"{spent} tokens > {budget.max_tokens}"
        if budget.max_cost is not None and cost > budget.max_cost:
            return f"cost {cost:.4f} > {budget.max_cost}"
        return None

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

    async def step(
        self, name: str, state: State, executor: StepExecutor, ctx: StepContext, labels: DataLabels | None = None
    ) -> StepOutcome:
        """Execute node ``name`` on ``state`` and decide where to go next. ``labels`` are what
        the run knows of its data's classification (see :mod:`agents.labels`)."""
        node = self.node(name)
        labels = labels or DataLabels()
        read = labels.of(self._reads.get(name, ()), self.declared)
        match node:
            case ModelNode():
                messages = self.model_messages(name, state)
                data = _in_messages(labels, messages, read)
                answer = await self._ask(name, node.output, messages, node.candidates, node.human,
                                         node.min_confidence, executor, ctx, data)  # fmt: skip
                updates = dict(answer.values)
                if node.write is not None and answer.message is not None:
                    message = answer.message
                    updates[node.write] = (
                        [message_to_dict(message)] if self.is_message_field(node.write) else message.text
                    )
                derived = {f: [] if declassified(node.output, f) else data[0] for f in updates}
                return answer.outcome(name, updates, self.route(name, self.merge(state, updates)),
                                      self._labelled(updates, derived))  # fmt: skip
            case ClassifyNode():
                text = str(state[node.input])
                found = await executor.classify(ClassifyCall(step=ctx, text=text, classes=node.classes), node)
                routing = [f"classifier: {found.label} (margin {found.margin:.3f})"]
                if found.margin >= node.min_margin or not node.cascade:
                    updates = {node.write: found.label}
                    return StepOutcome(node=name, updates=updates, next=self.route(name, self.merge(state, updates)),
                                       routing=routing, labels={node.write: self.declared[node.write]})  # fmt: skip
                question = [
                    SystemMessage(f"Classify the message as one of: {', '.join(node.classes)}. Answer in JSON."),
                    HumanMessage(text),
                ]
                output = {node.write: OutputField(enum=list(node.classes))}
                answer = await self._ask(name, output, question, node.cascade, node.human, 0.5, executor, ctx,
                                         _in_messages(labels, question, read), routing)  # fmt: skip
                return answer.outcome(name, answer.values, self.route(name, self.merge(state, answer.values)),
                                      self._labelled(answer.values, {node.write: []}))  # fmt: skip
            case ToolNode():
                args = {arg: expression(state) for arg, expression in self._args[name].items()}
                read = sorted({*read, *labels.found_in(json.dumps(args, ensure_ascii=False, default=str))})
                call = ToolCall(step=ctx, tool=node.tool, args=args, labels=read)
                tool_reply = await executor.call_tool(call, node)
                if failure := tool_reply.error:
                    if node.on_error is None:
                        raise StepFailed(f"step {ctx.step_id} failed: {failure.message}", failure.kind)
                    updates = {node.error: failure.message} if node.error else {}
                    return StepOutcome(
                        node=name, updates=updates, next=node.on_error, routing=[f"{failure.kind}: {failure.message}"],
                        labels={f: sorted({*read, *self.declared[f]}) for f in updates},  # the message may quote them
                    )  # fmt: skip
                scope = {**state, "result": tool_reply.output}
                updates = {f: expression(scope) for f, expression in self._outputs[name].items()}
                field_labels, values = self._labelled(updates, self._from_state(name, labels))
                for f in updates:  # what came from the tool keeps the labels of its fields
                    field_labels[f] = sorted(
                        {*field_labels[f], *labels_read(self._outputs[name][f], tool_reply.labels)}
                    )
                for label, produced in _values(tool_reply.output, tool_reply.labels).items():
                    values.setdefault(label, []).extend(produced)
                return StepOutcome(node=name, updates=updates, next=self.route(name, self.merge(state, updates)),
                                   labels=field_labels, sensitive=values)  # fmt: skip
            case ApprovalNode():
                request = ApprovalRequest(
                    step=ctx,
                    ask=PromptTemplate.from_template(node.ask).format(**_prompt_values(state)),
                    approvers=node.approvers,
                    escalate_to=node.escalate_to,
                )
                decision = await executor.request_approval(request, node)
                targets = {"approve": self.route(name, state), "reject": node.on_reject}
                target = targets.get(decision.outcome, node.on_changes or node.on_reject)
                note = f"{decision.approver}: {decision.outcome}" + (f" ({decision.reason})" if decision.reason else "")
                return StepOutcome(node=name, updates={}, next=target, decision=decision.outcome, routing=[note])
            case RouteNode():
                return StepOutcome(node=name, updates={}, next=self.route(name, state))
            case EndNode():
                return StepOutcome(node=name, updates={}, next=None)
        raise TypeError(f"unknown node type {type(node).__name__}")  # pragma: no cover

    def model_messages(self, name: str, state: State) -> list[BaseMessage]:
        node = self.node(name)
        assert isinstance(node, ModelNode)
        prompt, system = self._prompts[name]
        values = _prompt_values(state)
        messages: list[BaseMessage] = [SystemMessage(system.format(**values))] if system else []
        if node.messages:
            messages += to_messages(state[node.messages])
        messages.append(HumanMessage(prompt.format(**values)))
        return messages

    async def _ask(
        self,
        name: str,
        output: dict[str, OutputField] | None,
        messages: list[BaseMessage],
        candidates: list[str],
        human: list[str],
        min_confidence: float,
        executor: StepExecutor,
        ctx: StepContext,
        data: tuple[list[str], dict[str, list[str]]],
        routing: list[str] | None = None,
    ) -> _Answer:
        """Walk the cascade until an answer is valid and confident; record every decision.
        ``data``: the labels of the messages' data, and the labelled values in them."""
        answer = _Answer(routing=list(routing or []))
        offset = len(answer.routing)
        for attempt, candidate in enumerate(candidates, start=offset):
            if candidate == "human":
                return await self._ask_human(name, output, answer, human, executor, ctx)
            model, tier = model_or_tier(candidate)
            call = ModelCall(
                step=ctx, messages=messages, tier=tier, model=model,
                output=output, labels=data[0], sensitive=data[1], attempt=attempt,
            )  # fmt: skip
            reply = await executor.call_model(call, self.node(name))  # type: ignore[arg-type]  # a model or classify node
            answer.add(reply)
            if reply.skipped:
                answer.routing.append(f"{reply.model}: skipped, {reply.skipped}")
            elif reply.error:
                answer.routing.append(f"{reply.model}: invalid output ({reply.error[:120]})")
            elif reply.confidence < min_confidence:
                answer.routing.append(f"{reply.model}: confidence {reply.confidence} < {min_confidence}")
            else:
                masked = f" ({', '.join(reply.masked)} masked)" if reply.masked else ""
                answer.routing.append(f"{reply.model}: ok" + (" after repair" if reply.repaired else "") + masked)
                answer.values, answer.model = reply.structured or {}, reply.model
                answer.message = reply.message if isinstance(reply.message, AIMessage) else None
                return answer
        raise ModelOutputInvalid(f"node '{name}': no model gave valid output: {'; '.join(answer.routing)}")

    async def _ask_human(
        self,
        name: str,
        output: dict[str, OutputField] | None,
        answer: _Answer,
        roles: list[str],
        executor: StepExecutor,
        ctx: StepContext,
    ) -> _Answer:
        fields = ", ".join(output or {}) or "an answer"
        node = ApprovalNode(
            type="approval", ask=f"{name}: the models could not answer; provide {fields}", approvers=roles
        )
        request = ApprovalRequest(step=ctx, ask=node.ask, approvers=roles)
        decision = await executor.request_approval(request, node)
        values, error = (decision.values or {}), "declined" if decision.outcome == "reject" else None
        if output and error is None:
            parsed, error = parse_output(output_model(output), json.dumps(values))
            values = parsed or {}
        if error:
            raise ModelOutputInvalid(f"node '{name}': {decision.approver} {error}: {'; '.join(answer.routing)}")
        answer.routing.append(f"human {decision.approver}: answered")
        answer.values, answer.model = values, f"human:{decision.approver}"
        return answer

    # -- labels ----------------------------------------------------------------------------

    def _labelled(self, updates: dict[str, Any], derived: dict[str, list[str]]) -> _Labelled:
        """Each updated field's labels (declared ∪ derived), and the labelled values in them."""
        labels = {f: sorted({*self.declared[f], *derived.get(f, ())}) for f in updates}
        return labels, _values(updates, labels)

    def _from_state(self, name: str, labels: DataLabels) -> dict[str, list[str]]:
        """The labels a tool node's outputs take from the state fields their expressions read."""
        return {
            f: labels.of(expression.names & set(self.spec.state) - {"result"}, self.declared)
            for f, expression in self._outputs[name].items()
        }


def declassified(output: dict[str, OutputField] | None, field: str) -> bool:
    """A choice from a fixed set (an enum, a yes/no) carries none of the labels of what it judged."""
    spec = (output or {}).get(field)
    return spec is not None and (spec.enum is not None or spec.type is FieldType.BOOL)


def _values(data: dict[str, Any], labels: dict[str, list[str]]) -> dict[str, list[str]]:
    """The strings in each labelled field of ``data``, by label."""
    values: dict[str, list[str]] = {}
    for f, ls in labels.items():
        if f in data:
            for label in ls:
                values.setdefault(label, []).extend(strings_in(data[f]))
    return values


def _in_messages(
    labels: DataLabels, messages: list[BaseMessage], read: list[str]
) -> tuple[list[str], dict[str, list[str]]]:
    """The labels of what the messages carry — of the fields they were made from, and of any
    labelled value that shows up in them — and those labelled values."""
    found = labels.found_in("\n".join(m.text for m in messages))
    return sorted({*read, *found}), found


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
