"""Compile a graph spec to a LangGraph ``StateGraph`` and run it in-process.

Every spec node becomes one LangGraph node that runs the shared step of
:class:`~agents.plan.GraphPlan` and returns a ``Command`` (its updates and where to go),
so LangGraph holds the graph semantics here exactly as the Temporal workflow does there.
Message fields get an appending reducer; every other field keeps the last value.
"""

from __future__ import annotations

import operator
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Annotated, Any, TypedDict, cast

from langgraph.errors import GraphRecursionError
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command

from chamberlain.agents.classifier import ExemplarClassifier
from chamberlain.agents.exceptions import StepLimitExceeded
from chamberlain.agents.labels import DataLabels
from chamberlain.agents.models import ModelRegistry, call_model
from chamberlain.agents.plan import GraphPlan, RunOutcome, StepOutcome
from chamberlain.agents.spec import ApprovalNode, ClassifyNode, GraphSpec, ModelNode, ToolNode
from chamberlain.agents.steps import (
    ApprovalDecision,
    ApprovalRequest,
    ClassifyCall,
    ClassifyReply,
    ModelCall,
    ModelReply,
    StepContext,
    StepExecutor,
    ToolCall,
    ToolReply,
)
from chamberlain.agents.tooling import call_tool
from chamberlain.agents.validation import successors
from chamberlain.tools.registry import ToolRegistry

Approver = Callable[[ApprovalRequest], ApprovalDecision]


def compile_to_langgraph(
    plan: GraphPlan,
    executor: StepExecutor,
    *,
    run_id: str,
    trace: list[StepOutcome] | None = None,
    labels: DataLabels | None = None,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The plan as a compiled LangGraph graph whose effects go through ``executor``; ``labels``
    are the input's (:meth:`GraphPlan.initial_labels`), carried beside LangGraph's state."""
    fields: dict[str, Any] = {
        name: Annotated[list[Any], operator.add] if plan.is_message_field(name) else Any for name in plan.spec.state
    }
    builder: StateGraph[Any, Any, Any, Any] = StateGraph(TypedDict("State", fields))  # type: ignore[operator]
    visits: Counter[str] = Counter()
    known = labels or DataLabels()

    def node_function(name: str) -> Callable[[dict[str, Any]], Any]:
        async def run(state: dict[str, Any]) -> Command[Any]:
            nonlocal known
            visits[name] += 1
            ctx = StepContext(run_id=run_id, node=name, visit=visits[name])
            outcome = await plan.step(name, dict(state), executor, ctx, known)
            known = plan.merge_labels(known, outcome)
            if trace is not None:
                trace.append(outcome)
            return Command(update=outcome.updates, goto=outcome.next or END)

        return run

    for name, node in plan.spec.nodes.items():
        builder.add_node(name, cast(Any, node_function(name)), destinations=tuple(successors(node)) or (END,))
    builder.add_edge(START, plan.start)
    return builder.compile()


class LocalExecutor:
    """Runs steps in this process: models and tools directly, approvals through a callback."""

    def __init__(self, models: ModelRegistry, tools: ToolRegistry, approve: Approver | None = None) -> None:
        self.models, self.tools, self.approve = models, tools, approve
        self.classifier = ExemplarClassifier()

    async def call_model(self, call: ModelCall, node: ModelNode | ClassifyNode) -> ModelReply:
        return await call_model(self.models, call)

    async def classify(self, call: ClassifyCall, node: ClassifyNode) -> ClassifyReply:
        return self.classifier.classify(call)

    async def call_tool(self, call: ToolCall, node: ToolNode) -> ToolReply:
        return await call_tool(self.tools, call)

    async def request_approval(self, request: ApprovalRequest, node: ApprovalNode) -> ApprovalDecision:
        if self.approve is None:
            return ApprovalDecision(step_id=request.step.step_id, outcome=node.default, approver="default")
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
) -> RunOutcome:
    """Run a graph once in this process with LangGraph — no durability, for quick iteration.
    Effects go through ``executor`` (e.g. a gate wrapping one); by default a
    :class:`LocalExecutor` over ``models``, ``tools`` and ``approve``."""
    if executor is None:
        if models is None or tools is None:
            raise TypeError("run_in_process needs models= and tools=, or an executor= that runs the steps")
        executor = LocalExecutor(models, tools, approve)
    plan = GraphPlan(spec)
    steps: list[StepOutcome] = [] if trace is None else trace
    run_id = f"local-{uuid.uuid4().hex[:12]}"
    initial = plan.initial_state(values)
    graph = compile_to_langgraph(plan, executor, run_id=run_id, trace=steps,
                                 labels=plan.initial_labels(initial))  # fmt: skip
    try:
        state = await graph.ainvoke(initial, {"recursion_limit": plan.max_steps + 1})
    except GraphRecursionError as exc:
        raise StepLimitExceeded(f"graph '{spec.name}' walked more than {plan.max_steps} steps") from exc
    last = steps[-1]
    rejected = last.decision not in (None, "approve")
    end = None if rejected else last.node
    return RunOutcome(
        status="rejected" if rejected else "completed", end=end, output=plan.output(end, state), steps=len(steps)
    )
