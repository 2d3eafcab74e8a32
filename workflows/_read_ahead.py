"""Reads in a row, in one local activity: the steps a run can take without the server.

A read step is one local activity: the gate's decision and the read. When the graph goes
from a read straight on to another read (through routes, perhaps), the run asks for them
together — :class:`ReadAhead`, run by :class:`ReadsAhead` in the worker — and the worker
walks the same :class:`~agents.plan.GraphPlan` the workflow does, deciding and reading each
step exactly as the step's own local activity would. It stops:

- before anything else (a model, a write, an approval, a child run, an end);
- at a read the gate does not allow as it is, or whose reply the plan fails the step on: the
  decision and reply travel back, and the workflow goes on from them, not asking or reading again;
- at a read that fails or outlasts its node's timeout: the workflow takes it under the node's
  retry policy, one attempt spent;
- at the run's step limits, and once it has been at it for :data:`TIME_AHEAD`.

The workflow applies the steps it gets back one by one, as if it had taken them; if the local
activity itself fails, the workflow takes the steps one at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from chamberlain.agents._labels import DataLabels
from chamberlain.agents._outcomes import StepOutcome
from chamberlain.agents._plan import GraphPlan
from chamberlain.agents._spec import EndNode, GraphSpec, RouteNode, ToolNode
from chamberlain.agents._steps import StepContext, ToolCall, ToolFailure, ToolReply
from chamberlain.tools._adapter import Effect
from chamberlain.workflows._gate import ActedStep, DecidedStep, Gate, GateCheck
from chamberlain.workflows._types import Principal

PLANS_KEPT = 64  # compiled graphs a worker keeps for its runs' read-aheads
TIME_AHEAD = timedelta(seconds=2)  # no step starts later than this into a read-ahead


class ReadAhead(BaseModel):
    """Take the reads from ``node`` on, at most ``limit`` steps (the run's step limits)."""

    graph: GraphSpec
    run_id: str
    node: str
    state: dict[str, Any]
    labels: DataLabels
    visits: dict[str, int]
    limit: int
    principal: Principal | None
    grant: list[str] | None
    effects_of: list[str] = []  # the run's tools, if it does not know yet which of them write


class ReadStep(BaseModel):
    """A step the worker took: what it did (its ``sensitive`` values apart, as the outcome's
    serialisation leaves them out), its visit, and its tool call as the seal needs it."""

    outcome: StepOutcome
    sensitive: dict[str, list[str]] = {}
    visit: int
    acted: ActedStep | None = None  # None: a route, which calls nothing
    started: datetime
    ended: datetime

    def taken(self) -> StepOutcome:
        return self.outcome.model_copy(update={"sensitive": self.sensitive})


class ReadRun(BaseModel):
    """The steps taken, and what became of the step the worker stopped at, if it began it: its
    decision — and its reply, if it read — from which the workflow goes on, or the failure of
    the read it tried, an attempt of the node's retry policy spent."""

    steps: list[ReadStep] = []
    stopped_at: str | None = None  # the ID of the step begun and not taken
    stopped: DecidedStep | None = None
    failure: ToolFailure | None = None
    effects: dict[str, str] = {}  # what each tool of ``ReadAhead.effects_of`` does, as this worker offers it


def reads_on(graph: GraphSpec, name: str, reads: set[str]) -> bool:
    """Whether the read at ``name`` may lead straight to another read (through routes only):
    only then is asking for reads together worth sending the graph along."""
    seen: set[str] = set()
    queue = _next(graph, name)
    while queue:
        found = queue.pop()
        if found in seen:
            continue
        seen.add(found)
        node = graph.nodes[found]
        if isinstance(node, ToolNode) and node.tool in reads:
            return True
        if isinstance(node, RouteNode):
            queue.extend(_next(graph, found))
    return False


def _next(graph: GraphSpec, name: str) -> list[str]:
    node = graph.nodes[name]
    if isinstance(node, EndNode):
        return []
    targets = [node.next] if isinstance(node.next, str) else [branch.to for branch in node.next or []]
    return targets + ([node.on_error] if isinstance(node, ToolNode) and node.on_error else [])


class _Stop(Exception):
    """Not a read the gate allows: the worker stops before this step."""


class _ReadsOnly:
    """The executor of a read-ahead: a tool step is decided and read as in its own local
    activity (:meth:`Gate.decide_and_act`); anything else stops the walk."""

    def __init__(self, gate: Gate, ahead: ReadAhead, attempt: int) -> None:
        self.gate, self.ahead, self.attempt = gate, ahead, attempt
        self.acted: ActedStep | None = None
        self.decided: DecidedStep | None = None

    async def call_tool(self, call: ToolCall, node: Any) -> ToolReply:
        check = GateCheck(
            call=call, principal=self.ahead.principal, grant=self.ahead.grant, labels=call.labels, write_ahead=True
        )
        decided = self.decided = await self.gate.decide_and_act(check, self.attempt)
        if decided.reply is None or decided.decision.ticket is None:
            raise _Stop
        self.acted = ActedStep(call=call, ticket=decided.decision.ticket, acted=decided.reply.error is None)
        return decided.reply

    async def _stop(self, *args: Any) -> Any:
        raise _Stop

    call_model = classify = run_graph = request_approval = _stop


class ReadsAhead:
    """The worker's side: compiled plans kept by the graph's content (never by a name the
    caller gives), and the walk."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self._plans: OrderedDict[str, GraphPlan] = OrderedDict()

    def _plan(self, graph: GraphSpec) -> GraphPlan:
        key = hashlib.sha256(graph.model_dump_json().encode()).hexdigest()
        plan = self._plans.pop(key, None) or GraphPlan(graph)
        self._plans[key] = plan
        if len(self._plans) > PLANS_KEPT:
            self._plans.popitem(last=False)
        return plan

    def _goes_ahead(self, plan: GraphPlan, name: str, first: bool) -> bool:
        """A route, a read this worker offers — or the run's first tool step, whatever its tool:
        a write is decided then and not acted on (:class:`_ReadsOnly`), as its own local activity would."""
        node = plan.node(name)
        if isinstance(node, RouteNode):
            return True
        tools = self.gate.tools
        if not isinstance(node, ToolNode) or node.tool not in tools:
            return False
        return tools[node.tool].effect is Effect.READ or first

    async def run(self, ahead: ReadAhead, attempt: int) -> ReadRun:
        plan = self._plan(ahead.graph)
        name, state, labels, visits = ahead.node, ahead.state, ahead.labels, dict(ahead.visits)
        tools = self.gate.tools
        effects = {tool: tools[tool].effect.value for tool in ahead.effects_of if tool in tools}
        taken, until = ReadRun(effects=effects), datetime.now(UTC) + TIME_AHEAD
        while len(taken.steps) < ahead.limit and datetime.now(UTC) < until:
            if not self._goes_ahead(plan, name, first=bool(ahead.effects_of) and not taken.steps):
                break
            node = plan.node(name)
            visit = visits.get(name, 0) + 1
            ctx = StepContext(run_id=ahead.run_id, node=name, visit=visit, principal=ahead.principal)
            executor = _ReadsOnly(self.gate, ahead, attempt)
            started = datetime.now(UTC)
            try:
                async with asyncio.timeout(node.timeout.total_seconds() if isinstance(node, ToolNode) else None):
                    outcome = await plan.step(name, state, executor, ctx, labels)
            except Exception as exc:  # the workflow takes this step, from what became of it here
                taken.stopped_at, taken.stopped = ctx.step_id, executor.decided
                if executor.decided is None and not isinstance(exc, _Stop):  # the read raised, or timed out
                    kind = "StepFailed" if isinstance(exc, TimeoutError) else type(exc).__name__
                    taken.failure = ToolFailure(kind=kind, message=str(exc) or "timed out")
                break
            taken.steps.append(
                ReadStep(
                    outcome=outcome,
                    sensitive=outcome.sensitive,
                    visit=visit,
                    acted=executor.acted,
                    started=started,
                    ended=datetime.now(UTC),
                )
            )
            state, labels = plan.merge(state, outcome.updates), plan.merge_labels(labels, outcome)
            visits[name] = visit
            if outcome.next is None:
                break
            name = outcome.next
        return taken
