"""A graph spec compiled for execution: the semantics both engines share.

``GraphPlan`` compiles a spec's expressions and templates once, then runs one node at a
time — one method per node kind, state in, :class:`StepOutcome` out — and routes. All of it
is deterministic, so it runs inside a Temporal workflow as well as inside a LangGraph node.
The plan keeps no run's data: the state, the labels and the visits are the caller's (the
workflow's cursor, or LangGraph's state channels). Effects go through a
:class:`~agents.steps.StepExecutor`, the only thing that differs between the engines.

Its parts live beside it: :mod:`agents.state` (coercion, merging), :mod:`agents.cascade`
(model after model, then a person), :mod:`agents.label_flow` (how labels follow data) and
:mod:`agents.outcomes` (what a step did, how a run ended).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage, message_to_dict
from langchain_core.prompts import PromptTemplate

from chamberlain.agents import _state as states
from chamberlain.agents._agent_loop import run_agent
from chamberlain.agents._cascade import Question, ask
from chamberlain.agents._composite import run_map, run_subgraph
from chamberlain.agents._exceptions import ExpressionError, ModelOutputInvalid, RunFailed
from chamberlain.agents._expressions import Expression, compile_expression
from chamberlain.agents._label_flow import Labelled, declassified, in_messages, labelled_values
from chamberlain.agents._labels import DataLabels, labels_read
from chamberlain.agents._loader import check_graph
from chamberlain.agents._messages import to_messages
from chamberlain.agents._models import output_model, parse_output
from chamberlain.agents._outcomes import RunOutcome, StepOutcome, run_status
from chamberlain.agents._spec import (
    AgentNode,
    ApprovalNode,
    ClassifyNode,
    EndNode,
    GraphSpec,
    MapNode,
    ModelNode,
    Node,
    OutputField,
    RouteNode,
    SubgraphNode,
    ToolNode,
)
from chamberlain.agents._state import State, prompt_values
from chamberlain.agents._steps import ApprovalRequest, ClassifyCall, StepContext, StepExecutor, TokenUsage, ToolCall

__all__ = ["GraphPlan", "RunOutcome", "State", "StepOutcome", "declassified"]


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
            if isinstance(node, AgentNode):
                templates = (PromptTemplate.from_template(node.instructions), PromptTemplate.from_template(node.prompt))
                self._reads[name] = {v for t in templates for v in t.input_variables}
            if isinstance(node, SubgraphNode | MapNode):
                self._args[name] = {k: compile_expression(v) for k, v in node.input.items()}
                self._reads[name] = {f for e in self._args[name].values() for f in e.names} & set(spec.state)
                if isinstance(node, MapNode):
                    self._reads[name].add(node.over)
                else:
                    self._outputs[name] = {k: compile_expression(v) for k, v in node.output.items()}

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
        return states.is_message_field(self.spec, name)

    # -- a run's state, labels and end -----------------------------------------------------

    def initial_state(self, values: dict[str, Any]) -> State:
        """Defaults overlaid with ``values``; an unknown field is an error naming it."""
        return states.initial_state(self.spec, values)

    def merge(self, state: State, updates: dict[str, Any]) -> State:
        """Apply updates: message fields append, every other field is replaced."""
        return states.merge(self.spec, state, updates)

    def initial_labels(self, state: State) -> DataLabels:
        """The labelled values of a run's input: the strings in its labelled fields."""
        labelled = {f: state[f] for f in state if self.declared[f]}
        return DataLabels().updated({}, labelled_values(labelled, self.declared))

    def merge_labels(self, labels: DataLabels, learned: StepOutcome | DataLabels) -> DataLabels:
        """Labels after a step (or after the run's input): its fields' new labels — message
        fields keep their old messages' labels too — and the labelled values it brought in.
        This is the reducer of the in-process engine's labels channel."""
        if isinstance(learned, StepOutcome):
            learned = DataLabels(fields=learned.labels, values=learned.sensitive)
        fields = {
            f: sorted({*ls, *labels.fields.get(f, ())}) if self.is_message_field(f) else ls
            for f, ls in learned.fields.items()
        }
        return labels.updated(fields, learned.values)

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

    def outcome(self, steps: Sequence[StepOutcome], state: State) -> RunOutcome:
        """How a run that took ``steps`` and ended with ``state`` ended: at an end node, or
        stopped by an approval; rejected if its last approval was not given."""
        last = steps[-1]
        end = last.node if isinstance(self.node(last.node), EndNode) else None
        return RunOutcome(
            status=run_status(s.approval for s in steps), end=end, output=self.output(end, state), steps=len(steps)
        )

    # -- one step --------------------------------------------------------------------------

    async def step(
        self, name: str, state: State, executor: StepExecutor, ctx: StepContext, labels: DataLabels | None = None
    ) -> StepOutcome:
        """Execute node ``name`` on ``state`` and decide where to go next. ``labels`` are what
        the run knows of its data's classification (see :mod:`agents.labels`)."""
        node, labels = self.node(name), labels or DataLabels()
        match node:
            case ModelNode():
                return await self._model(name, node, state, executor, ctx, labels)
            case ClassifyNode():
                return await self._classify(name, node, state, executor, ctx, labels)
            case ToolNode():
                return await self._tool(name, node, state, executor, ctx, labels)
            case ApprovalNode():
                return await self._approval(name, node, state, executor, ctx)
            case AgentNode():
                return await run_agent(self, name, node, state, executor, ctx, labels)
            case SubgraphNode():
                return await run_subgraph(self, name, node, state, executor, ctx, labels)
            case MapNode():
                return await run_map(self, name, node, state, executor, ctx, labels)
            case RouteNode():
                return StepOutcome(node=name, updates={}, next=self.route(name, state))
            case EndNode():
                return StepOutcome(node=name, updates={}, next=None)
        raise TypeError(f"unknown node type {type(node).__name__}")  # pragma: no cover

    async def _model(
        self, name: str, node: ModelNode, state: State, executor: StepExecutor, ctx: StepContext, labels: DataLabels
    ) -> StepOutcome:
        messages = self.model_messages(name, state)
        question = Question(messages, node.output, *in_messages(labels, messages, self._read(name, labels)))
        answer = await ask(
            name, node, question, executor, ctx, candidates=node.candidates, min_confidence=node.min_confidence
        )
        updates = dict(answer.values)
        if node.write is not None and answer.message is not None:
            message = answer.message
            updates[node.write] = [message_to_dict(message)] if self.is_message_field(node.write) else message.text
        derived = {f: [] if declassified(node.output, f) else question.labels for f in updates}
        return answer.outcome(updates, self.route(name, self.merge(state, updates)), self._labelled(updates, derived))

    async def _classify(
        self, name: str, node: ClassifyNode, state: State, executor: StepExecutor, ctx: StepContext, labels: DataLabels
    ) -> StepOutcome:
        """The classifier first; the node's cascade when its margin is too thin."""
        text = str(state[node.input])
        found = await executor.classify(ClassifyCall(step=ctx, text=text, classes=node.classes), node)
        routing = [f"classifier: {found.label} (margin {found.margin:.3f})"]
        margin = {node.margin: round(found.margin, 4)} if node.margin else {}
        if found.margin >= node.min_margin or not node.cascade:
            updates = {node.write: found.label, **margin}
            return StepOutcome(
                node=name,
                updates=updates,
                next=self.route(name, self.merge(state, updates)),
                routing=routing,
                labels={f: self.declared[f] for f in updates},
            )
        messages = [
            SystemMessage(f"Classify the message as one of: {', '.join(node.classes)}. Answer in JSON."),
            HumanMessage(text),
        ]
        output = {node.write: OutputField(enum=list(node.classes))}
        question = Question(messages, output, *in_messages(labels, messages, self._read(name, labels)))
        answer = await ask(
            name, node, question, executor, ctx, candidates=node.cascade, min_confidence=0.5, routing=routing
        )
        updates = {**answer.values, **margin}
        return answer.outcome(updates, self.route(name, self.merge(state, updates)), self._labelled(updates, {}))

    async def _tool(
        self, name: str, node: ToolNode, state: State, executor: StepExecutor, ctx: StepContext, labels: DataLabels
    ) -> StepOutcome:
        """A refusal goes down ``on_error`` when the node has one, and fails the run otherwise."""
        args = {arg: expression(state) for arg, expression in self._args[name].items()}
        read = sorted({*self._read(name, labels), *labels.found_in(json.dumps(args, ensure_ascii=False, default=str))})
        reply = await executor.call_tool(ToolCall(step=ctx, tool=node.tool, args=args, labels=read), node)
        if failure := reply.error:
            if node.on_error is None:
                raise RunFailed.of_kind(failure.kind, f"step {ctx.step_id} failed: {failure.message}")
            updates = {node.error: failure.message} if node.error else {}
            return StepOutcome(
                node=name,
                updates=updates,
                next=node.on_error,
                routing=[f"{failure.kind}: {failure.message}"],
                labels={f: sorted({*read, *self.declared[f]}) for f in updates},  # the message may quote them
            )
        scope = {**state, "result": reply.output}
        updates = {f: expression(scope) for f, expression in self._outputs[name].items()}
        field_labels, values = self._labelled(updates, self._from_state(name, labels))
        for f in updates:  # what came from the tool keeps the labels of its fields
            field_labels[f] = sorted({*field_labels[f], *labels_read(self._outputs[name][f], reply.labels)})
        for label, produced in labelled_values(reply.output, reply.labels).items():
            values.setdefault(label, []).extend(produced)
        return StepOutcome(
            node=name,
            updates=updates,
            next=self.route(name, self.merge(state, updates)),
            labels=field_labels,
            sensitive=values,
        )

    async def _approval(
        self, name: str, node: ApprovalNode, state: State, executor: StepExecutor, ctx: StepContext
    ) -> StepOutcome:
        """Approve goes on; reject goes to ``on_reject`` (none: the run stops); a request for
        changes goes to ``on_changes``, else like a rejection. An approval's ``output`` values
        are written to the state; values that fail its schema fail the step, naming the field."""
        request = ApprovalRequest(
            step=ctx,
            ask=PromptTemplate.from_template(node.ask).format(**prompt_values(state)),
            approvers=node.approvers,
            escalate_to=node.escalate_to,
        )
        decision = await executor.request_approval(request, node)
        updates = approval_values(name, node, decision.values) if decision.values is not None else {}
        after = self.merge(state, updates)
        targets = {"approve": self.route(name, after), "reject": node.on_reject}
        target = targets.get(decision.outcome, node.on_changes or node.on_reject)
        note = f"{decision.by}: {decision.outcome}" + (f" ({decision.reason})" if decision.reason else "")
        return StepOutcome(
            node=name,
            updates=updates,
            next=target,
            approval=decision.outcome,
            routing=[note],
            labels={f: self.declared[f] for f in updates},
        )

    def model_messages(self, name: str, state: State) -> list[BaseMessage]:
        node = self.node(name)
        assert isinstance(node, ModelNode)
        prompt, system = self._prompts[name]
        values = prompt_values(state)
        messages: list[BaseMessage] = [SystemMessage(system.format(**values))] if system else []
        if node.messages:
            messages += to_messages(state[node.messages])
        messages.append(HumanMessage(prompt.format(**values)))
        return messages

    # -- labels ----------------------------------------------------------------------------

    def arguments(self, name: str) -> dict[str, Expression]:
        """A tool, subgraph or map node's argument (input) expressions, compiled."""
        return self._args[name]

    def labels_read(self, name: str, labels: DataLabels) -> list[str]:
        """The labels of the state fields node ``name`` sends out."""
        return self._read(name, labels)

    def labelled(self, updates: dict[str, Any], derived: dict[str, list[str]]) -> Labelled:
        """Each updated field's labels (declared ∪ derived), and the labelled values in them."""
        return self._labelled(updates, derived)

    def _read(self, name: str, labels: DataLabels) -> list[str]:
        """The labels of the state fields node ``name`` sends out."""
        return labels.of(self._reads.get(name, ()), self.declared)

    def _labelled(self, updates: dict[str, Any], derived: dict[str, list[str]]) -> Labelled:
        """Each updated field's labels (declared ∪ derived), and the labelled values in them."""
        labels = {f: sorted({*self.declared[f], *derived.get(f, ())}) for f in updates}
        return labels, labelled_values(updates, labels)

    def _from_state(self, name: str, labels: DataLabels) -> dict[str, list[str]]:
        """The labels a tool node's outputs take from the state fields their expressions read."""
        return {
            f: labels.of(expression.names & set(self.spec.state) - {"result"}, self.declared)
            for f, expression in self._outputs[name].items()
        }


def approval_values(name: str, node: ApprovalNode, values: dict[str, Any]) -> dict[str, Any]:
    """The state updates an approver's ``values`` make: only the node's ``output`` fields, validated."""
    if not node.output:
        return {}
    parsed, error = parse_output(output_model(node.output), json.dumps(values))
    if error is not None or parsed is None:
        raise ModelOutputInvalid(f"approval '{name}': the approver's values do not fit its output: {error}")
    return parsed
