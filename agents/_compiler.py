"""Compile a graph spec to a LangGraph ``StateGraph`` and run it in-process.

Every spec node becomes one LangGraph node that runs the shared step of
:class:`~agents.plan.GraphPlan` and returns a ``Command`` (its updates and where to go),
so LangGraph holds the graph semantics here exactly as the Temporal workflow does there.
Message fields get an appending reducer; every other field keeps the last value.

A compiled graph holds no run's data, so one graph serves many runs at once. What a run
learns lives in LangGraph's state, in channels beside the spec's fields: the visits per node
(``chamberlain.visits``, for stable step IDs), the labels of its data (``chamberlain.labels``,
merged by :meth:`GraphPlan.merge_labels`) and the steps it took (``chamberlain.steps``,
whose usage counts against the budget) — each with a reducer — and whether an approver let
it go over its budget (``chamberlain.waived``). Who the run is and acts for is its
:class:`RunContext`, LangGraph's run context (``context_schema``), given to each invocation.
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict, cast

from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphRecursionError
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command

from chamberlain.agents._classifier import ExemplarClassifier
from chamberlain.agents._exceptions import BudgetExceeded, GraphSpecError, SpecIssue, StepLimitExceeded
from chamberlain.agents._labels import DataLabels
from chamberlain.agents._models import ModelRegistry, call_model
from chamberlain.agents._plan import GraphPlan, RunOutcome, State, StepOutcome
from chamberlain.agents._spec import (
    AgentNode,
    ApprovalNode,
    ClassifyNode,
    GraphSpec,
    MapNode,
    ModelNode,
    SubgraphNode,
    ToolNode,
)
from chamberlain.agents._steps import (
    ApprovalAnswer,
    ApprovalRequest,
    ClassifyCall,
    ClassifyReply,
    GraphCall,
    GraphReply,
    ModelCall,
    ModelReply,
    Principal,
    StepContext,
    StepExecutor,
    TokenUsage,
    ToolCall,
    ToolReply,
)
from chamberlain.agents._tooling import call_tool
from chamberlain.agents._validation import successors
from chamberlain.tools._registry import ToolRegistry

Approver = Callable[[ApprovalRequest], ApprovalAnswer]

VISITS, LABELS, STEPS, WAIVED = "chamberlain.visits", "chamberlain.labels", "chamberlain.steps", "chamberlain.waived"
"""The run's own channels in LangGraph's state; no spec field may take these names."""


@dataclass(frozen=True)
class RunContext:
    """Which run an invocation is, and whom it acts for: the same for every step of the run."""

    run_id: str
    principal: Principal | None = None


def _count(visits: dict[str, int], new: dict[str, int]) -> dict[str, int]:
    """The visits reducer: a node's write of ``{node: 1}`` adds one visit."""
    return {**visits, **{node: visits.get(node, 0) + n for node, n in new.items()}}


def compile_to_langgraph(plan: GraphPlan, executor: StepExecutor) -> CompiledStateGraph[Any, RunContext, Any, Any]:
    """The plan as a compiled LangGraph graph whose effects go through ``executor``. Invoke it
    with :func:`graph_input` and ``context=RunContext(...)``; it keeps no state between runs."""
    if reserved := sorted({VISITS, LABELS, STEPS, WAIVED} & set(plan.spec.state)):
        issue = SpecIssue(f"state field '{reserved[0]}' is reserved", ("state", reserved[0]), suggestion="rename it")
        raise GraphSpecError([issue])
    fields: dict[str, Any] = {
        name: Annotated[list[Any], operator.add] if plan.is_message_field(name) else Any for name in plan.spec.state
    }
    fields[VISITS] = Annotated[dict[str, int], _count]
    fields[LABELS] = Annotated[DataLabels, plan.merge_labels]
    fields[STEPS] = Annotated[list[StepOutcome], operator.add]
    fields[WAIVED] = bool
    schema = TypedDict("State", fields)  # type: ignore[misc]  # the fields are the spec's
    builder: StateGraph[Any, RunContext, Any, Any] = StateGraph(schema, context_schema=RunContext)

    def node_function(name: str) -> Callable[..., Any]:
        async def run(state: dict[str, Any], runtime: Runtime[RunContext]) -> Command[Any]:
            run = runtime.context
            if not isinstance(run, RunContext):
                raise TypeError(f"graph '{plan.spec.name}' needs context=RunContext(run_id=...) for each invocation")
            visit = state[VISITS].get(name, 0) + 1
            ctx = StepContext(run_id=run.run_id, node=name, visit=visit, principal=run.principal)
            outcome = await plan.step(name, spec_fields(plan, state), executor, ctx, state[LABELS])
            waived = state.get(WAIVED, False)
            if outcome.next is not None and not waived:
                waived = await _over_budget(plan, executor, ctx, [*state[STEPS], outcome])
            update = {**outcome.updates, VISITS: {name: 1}, LABELS: outcome, STEPS: [outcome], WAIVED: waived}
            return Command(update=update, goto=outcome.next or END)

        return run

    for name, node in plan.spec.nodes.items():
        builder.add_node(name, cast(Any, node_function(name)), destinations=tuple(successors(node)) or (END,))
    builder.add_edge(START, plan.start)
    return builder.compile()


async def _over_budget(plan: GraphPlan, executor: StepExecutor, ctx: StepContext, steps: list[StepOutcome]) -> bool:
    """False within budget; over it, True if the budget's approvers let the run go on (once),
    else :class:`BudgetExceeded` — as the durable engine does."""
    usage = TokenUsage(
        input_tokens=sum(s.usage.input_tokens for s in steps if s.usage),
        output_tokens=sum(s.usage.output_tokens for s in steps if s.usage),
    )
    excess = plan.over_budget(usage, sum(s.cost for s in steps))
    if excess is None:
        return False
    budget = plan.spec.budget
    if budget is not None and budget.on_exceeded == "escalate":
        ask = f"Run is over budget ({excess}); continue?"
        node = ApprovalNode(type="approval", ask=ask, approvers=budget.approvers)
        step = ctx.model_copy(update={"node": "budget", "visit": 1})
        request = ApprovalRequest(step=step, ask=node.ask, approvers=node.approvers)
        if (await executor.request_approval(request, node)).outcome == "approve":
            return True
    raise BudgetExceeded(f"run over budget: {excess}")


def graph_input(plan: GraphPlan, values: dict[str, Any]) -> dict[str, Any]:
    """A compiled graph's input: the run's initial state (coerced), and the labels of its data."""
    state = plan.initial_state(values)
    return {**state, LABELS: plan.initial_labels(state)}


def spec_fields(plan: GraphPlan, state: Mapping[str, Any]) -> State:
    """The spec's fields of a LangGraph state, without the run's own channels."""
    return {name: state[name] for name in plan.spec.state}


class LocalExecutor:
    """Runs steps in this process: models and tools directly, approvals through a callback."""

    def __init__(self, models: ModelRegistry, tools: ToolRegistry, approve: Approver | None = None) -> None:
        self.models, self.tools, self.approve = models, tools, approve
        self.classifier = ExemplarClassifier()

    async def call_model(self, call: ModelCall, node: ModelNode | ClassifyNode | AgentNode) -> ModelReply:
        return await call_model(self.models, call, tools=self.tools)

    async def classify(self, call: ClassifyCall, node: ClassifyNode) -> ClassifyReply:
        return self.classifier.classify(call)

    async def call_tool(self, call: ToolCall, node: ToolNode | AgentNode) -> ToolReply:
        return await call_tool(self.tools, call)

    async def run_graph(self, call: GraphCall, node: SubgraphNode | MapNode) -> GraphReply:
        """A child graph, nested in this process: its steps through :meth:`for_child`, its own visits."""
        plan = GraphPlan(call.graph)
        graph = compile_to_langgraph(plan, self.for_child(call))
        trace: list[StepOutcome] = []
        outcome = await run_compiled(
            plan, graph, call.input, principal=call.step.principal, run_id=call.step.step_id, trace=trace
        )
        usage = TokenUsage(
            input_tokens=sum(s.usage.input_tokens for s in trace if s.usage),
            output_tokens=sum(s.usage.output_tokens for s in trace if s.usage),
        )
        return GraphReply(status=outcome.status, output=outcome.output, usage=usage, cost=sum(s.cost for s in trace))

    def for_child(self, call: GraphCall) -> StepExecutor:
        """What runs a child graph's steps (a gated engine wraps it in the child's gate)."""
        return self

    async def request_approval(self, request: ApprovalRequest, node: ApprovalNode) -> ApprovalAnswer:
        if self.approve is None:
            return ApprovalAnswer(step_id=request.step.step_id, outcome=node.default, reason="default")
        return self.approve(request)


async def run_in_process(
    spec: GraphSpec,
    values: dict[str, Any],
    *,
    models: ModelRegistry | None = None,
    tools: ToolRegistry | None = None,
    approve: Approver | None = None,
    trace: list[StepOutcome] | None = None,
    executor: StepExecutor | None = None,
    principal: Principal | None = None,
) -> RunOutcome:
    """Run a graph once in this process with LangGraph — no durability, for quick iteration.
    Effects go through ``executor`` (e.g. a gate wrapping one); by default a
    :class:`LocalExecutor` over ``models``, ``tools`` and ``approve``."""
    if executor is None:
        if models is None or tools is None:
            raise TypeError("run_in_process needs models= and tools=, or an executor= that runs the steps")
        executor = LocalExecutor(models, tools, approve)
    plan = GraphPlan(spec)
    return await run_compiled(plan, compile_to_langgraph(plan, executor), values, principal=principal, trace=trace)


async def run_compiled(
    plan: GraphPlan,
    graph: CompiledStateGraph[Any, RunContext, Any, Any],
    values: dict[str, Any],
    *,
    principal: Principal | None = None,
    run_id: str | None = None,
    trace: list[StepOutcome] | None = None,
) -> RunOutcome:
    """One run of ``graph`` (compiled from ``plan``), which may serve other runs at the same
    time. ``trace`` receives the steps taken, also when the run fails midway."""
    context = RunContext(run_id=run_id or f"local-{uuid.uuid4().hex[:12]}", principal=principal)
    config: RunnableConfig = {"recursion_limit": plan.max_steps + 1}
    state: dict[str, Any] = {STEPS: []}
    try:  # streamed, so the steps before a failure are known
        async for values_now in graph.astream(graph_input(plan, values), config, context=context, stream_mode="values"):
            state = values_now
    except GraphRecursionError as exc:
        raise StepLimitExceeded(f"graph '{plan.spec.name}' walked more than {plan.max_steps} steps") from exc
    finally:
        if trace is not None:
            trace.extend(state[STEPS])
    return plan.outcome(state[STEPS], spec_fields(plan, state))
