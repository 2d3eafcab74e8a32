"""The durable graph run: routing in the workflow, every model and tool call an activity.

The workflow walks a :class:`~agents.plan.GraphPlan` — the same step and routing code the
in-process LangGraph runner uses — with an executor whose effects are activities (timeouts
and retries from the spec, activity IDs from the deterministic step ID) and whose approvals
park the run until an update decides them. The permission gate wraps that executor
(:class:`~workflows.gate.GatedExecutor`, deciding in local activities), as it wraps the
in-process one. Long runs continue-as-new with their cursor.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError
from temporalio.exceptions import TimeoutError as TemporalTimeout

with workflow.unsafe.imports_passed_through():
    from chamberlain.agents._exceptions import AgentError, ModelOutputInvalid, ModelUnavailable, StepFailed
    from chamberlain.agents._plan import GraphPlan, StepOutcome, approval_values
    from chamberlain.agents._spec import (
        ActivityNode,
        AgentNode,
        ApprovalNode,
        ClassifyNode,
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
        StepContext,
        TokenUsage,
        ToolCall,
        ToolReply,
    )
    from chamberlain.tools._adapter import Effect
    from chamberlain.workflows._activities import GraphActivities
    from chamberlain.workflows._audit import AuditEntry
    from chamberlain.workflows._gate import DecidedStep, GateCheck, GateDecision, GatedExecutor, current_ticket, who
    from chamberlain.workflows._read_ahead import TIME_AHEAD, ReadAhead, ReadRun, reads_on
    from chamberlain.workflows._types import (
        Cursor,
        PendingApproval,
        Principal,
        RunProgress,
        RunRequest,
        RunResult,
        StepRecord,
    )
    from chamberlain.workflows._usage import UsageEntry


APPROVAL_STATE = SearchAttributeKey.for_keyword("ChamberlainApproval")
# Patches, newest first. A run started on this code carries only the newest marker, which
# implies the changes before it (each marker also costs the server a search attribute upsert);
# an older run is asked for its markers as its code asked.
READ_AHEAD = "chamberlain-read-ahead"  # reads in a row taken in one local activity
EFFECTS_LEARNED_IN_STEP = "chamberlain-effects-learned-in-step"  # which tools write: told by the first tool step
DECIDED_WHERE_ACTED = "chamberlain-decided-where-acted"  # a write decided in its tool's activity; usage metered there
WRITE_AHEAD = "chamberlain-audit-write-ahead"  # steps' records written behind and sealed; usage recorded locally
READ_WITH_DECISION = "chamberlain-read-with-decision"  # a read runs in its decision's local activity
LOCAL_READS = "chamberlain-local-reads"  # read-only tools run as local activities
Call = TypeVar("Call", ModelCall, ClassifyCall, ToolCall)
Reply = TypeVar("Reply", ModelReply, ClassifyReply, ToolReply)


def _step_failed(step_id: str, exc: ActivityError) -> ApplicationError:
    """A step's activity failed for good: the run fails with the cause's type (``StepFailed``
    when the cause is no application error, e.g. a timeout)."""
    cause = exc.cause if isinstance(exc.cause, ApplicationError) else None
    return ApplicationError(
        f"step {step_id} failed: {exc.cause}", type=cause.type if cause else "StepFailed", non_retryable=True
    )


def _retry_policy(node: ActivityNode, spent: int = 0) -> RetryPolicy:
    """The node's retry policy, less the attempts ``spent`` already (in a read-ahead)."""
    return RetryPolicy(
        maximum_attempts=node.retry.max_attempts - spent,
        initial_interval=node.retry.initial_interval,
        backoff_coefficient=node.retry.backoff,
        maximum_interval=node.retry.max_interval,
    )


# Unsandboxed: everything the workflow runs is imported once and passed through (see the plugin's
# PASSTHROUGH), so the sandbox guarded nothing here but builtins, and its per-activation cost was
# a third of a read step (docs/benchmarks.md). Determinism is held by the replay tests of
# recorded histories. A business's own workflows on the same worker stay sandboxed.
@workflow.defn(name="chamberlain.graph", failure_exception_types=[AgentError], sandboxed=False)
class GraphWorkflow:
    def __init__(self) -> None:
        self._request: RunRequest | None = None
        self._node: str | None = None
        self._steps: list[StepRecord] = []
        self._pending: PendingApproval | None = None
        self._decision: ApprovalAnswer | None = None
        self._approver: Principal | None = None
        self._cursor: Cursor | None = None
        self._approvals: Counter[str] = Counter()  # approvals decided per step ID, for their audit records
        self._local_reads = False
        self._read_with_decision = False
        self._local_usage = False
        self._metered = False  # model calls record their usage where they run
        self._department_over: str | None = None  # a metered call of this step found its department over budget
        self._writes: set[str] = set()  # the tools that write, decided in their own activity
        self._unlearned: list[str] = []  # the run's tools whose effects its first tool step tells
        self._reads: set[str] | None = None  # the tools that only read, once known, where reads go ahead
        self._stopped_ahead: ReadRun | None = None  # what became of the step a read-ahead stopped at
        self._executor: GatedExecutor | None = None
        self._approval_turn = asyncio.Lock()  # one approval pending at a time (a map's tool items ask at once)

    @workflow.run
    async def run(self, request: RunRequest) -> RunResult:
        self._request = request
        # Asked once, before any command: a marker after a long local activity lands in a later
        # workflow task and would not replay (seen under load).
        reads_ahead = workflow.patched(READ_AHEAD)
        learns = reads_ahead or workflow.patched(EFFECTS_LEARNED_IN_STEP)
        if learns or workflow.patched(DECIDED_WHERE_ACTED):
            write_ahead = self._local_reads = self._read_with_decision = self._metered = True
            tools = request.graph.called_tools()
            if learns:
                self._unlearned = tools
                self._reads = set() if reads_ahead else None
            elif tools:
                effects = await workflow.execute_local_activity_method(
                    GraphActivities.tool_effects, tools, start_to_close_timeout=timedelta(seconds=30)
                )
                self._writes = {name for name, effect in effects.items() if effect != Effect.READ}
        else:  # an older run: its markers are asked for in the order its code asked, every one
            write_ahead = self._local_usage = workflow.patched(WRITE_AHEAD)
            if write_ahead:
                self._local_reads = self._read_with_decision = True
            else:
                self._local_reads = workflow.patched(LOCAL_READS)
                self._read_with_decision = self._local_reads and workflow.patched(READ_WITH_DECISION)
        plan = GraphPlan(request.graph)
        if request.resume is None:
            state = plan.initial_state(request.input)
            labels = plan.initial_labels(state)
            if request.labels is not None:  # a child run knows what its parent knew of the data
                labels = labels.updated({}, request.labels.values)
            cursor = Cursor(node=plan.start, state=state, labels=labels)
        else:
            cursor = request.resume
        self._cursor = cursor
        executor = GatedExecutor(
            self,
            self._decide,
            principal=request.principal,
            graph=request.graph,
            ceiling=request.ceiling,
            decide_and_act=self._decide_and_act if self._read_with_decision else None,
            write_ahead=write_ahead,
        )
        self._executor = executor
        try:
            result = await self._walk(request, plan, cursor, executor)
        except (Exception, asyncio.CancelledError):  # not the SDK evicting a cached run: that seals nothing
            try:
                await self._seal()
            except ActivityError as exc:  # the run's own error says why it ended; the seal's is logged
                workflow.logger.error("run %s: audit seal failed: %s", workflow.info().workflow_id, exc.cause)
            raise
        await self._seal()
        return result

    async def _walk(self, request: RunRequest, plan: GraphPlan, cursor: Cursor, executor: GatedExecutor) -> RunResult:
        """Step through the graph from ``cursor`` until an end node, or continue as new."""
        steps_this_segment, read_ahead = 0, True
        while True:
            self._node = cursor.node
            if cursor.steps >= plan.max_steps:
                raise ApplicationError(
                    f"graph '{plan.spec.name}' reached max_steps={plan.max_steps} at node '{cursor.node}'",
                    type="StepLimitExceeded",
                    non_retryable=True,
                )
            limit = min(plan.max_steps - cursor.steps, request.steps_per_segment - steps_this_segment)
            # Where a read-ahead stopped, the run takes the step itself (and goes on from its decision).
            taken = await self._read_ahead(request, cursor, executor, limit) if read_ahead and limit > 1 else None
            read_ahead = taken is None
            if taken is not None:
                result = await self._apply(request, plan, cursor, executor, taken)
                steps_this_segment += len(taken.steps)
            else:
                result = await self._step(request, plan, cursor, executor)
                steps_this_segment += 1
            if result is not None:
                return result
            if steps_this_segment >= request.steps_per_segment or workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                await self._seal()
                cursor.segment += 1
                workflow.continue_as_new(request.model_copy(update={"resume": cursor, "input": {}}))

    async def _step(
        self, request: RunRequest, plan: GraphPlan, cursor: Cursor, executor: GatedExecutor
    ) -> RunResult | None:
        """Take the step at the cursor; the run's result if it ended there."""
        visit = cursor.visits.get(cursor.node, 0) + 1
        ctx = StepContext(
            run_id=workflow.info().workflow_id, node=cursor.node, visit=visit, principal=request.principal
        )
        started, self._department_over = workflow.now(), None
        try:
            outcome = await plan.step(cursor.node, cursor.state, executor, ctx, cursor.labels)
        except StepFailed as exc:
            raise ApplicationError(str(exc), type=exc.kind, non_retryable=True) from exc
        return await self._advance(request, plan, cursor, ctx, outcome, started, workflow.now())

    async def _apply(
        self, request: RunRequest, plan: GraphPlan, cursor: Cursor, executor: GatedExecutor, taken: ReadRun
    ) -> RunResult | None:
        """Take the steps a read-ahead took, one by one, as if the run had taken them."""
        self._department_over = None
        for step in taken.steps:
            ctx = StepContext(
                run_id=workflow.info().workflow_id,
                node=step.outcome.node,
                visit=step.visit,
                principal=request.principal,
            )
            if step.acted is not None:
                executor.acted.append(step.acted)
            result = await self._advance(request, plan, cursor, ctx, step.taken(), step.started, step.ended)
            if result is not None:
                return result
        return None

    async def _read_ahead(
        self, request: RunRequest, cursor: Cursor, executor: GatedExecutor, limit: int
    ) -> ReadRun | None:
        """Reads in a row from here in one local activity (:mod:`workflows.read_ahead`), when the
        run knows its reads and this one may lead straight to another; None: the step is taken
        as any other. A read the worker stopped at was decided there: the step goes on from that."""
        graph, node = request.graph, request.graph.nodes[cursor.node]
        if self._reads is None or not request.read_ahead or not isinstance(node, ToolNode):
            return None
        # Before the run's first tool step it does not know which tools read: any may, and the
        # read-ahead tells (deciding that step if it writes, as the step's own local activity would).
        reads = set(self._unlearned) or self._reads
        if node.tool not in reads or not reads_on(graph, cursor.node, reads):
            return None
        ahead = ReadAhead(
            graph=graph,
            run_id=workflow.info().workflow_id,
            node=cursor.node,
            state=cursor.state,
            labels=cursor.labels,
            visits=cursor.visits,
            limit=limit,
            principal=request.principal,
            grant=executor.grant,
            effects_of=self._unlearned,
        )
        longest = max(n.timeout for n in graph.nodes.values() if isinstance(n, ToolNode))
        try:
            taken = await workflow.execute_local_activity_method(
                GraphActivities.read_ahead,
                ahead,
                start_to_close_timeout=TIME_AHEAD + longest + timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except ActivityError as exc:  # the steps are taken one at a time, each under its own policy
            workflow.logger.warning("run %s: read-ahead failed: %s", ahead.run_id, exc.cause)
            return None
        if taken.effects:
            self._learn(taken.effects)
        self._stopped_ahead = taken if taken.stopped_at else None
        return taken if taken.steps else None

    async def _advance(
        self,
        request: RunRequest,
        plan: GraphPlan,
        cursor: Cursor,
        ctx: StepContext,
        outcome: StepOutcome,
        started: datetime,
        ended: datetime,
    ) -> RunResult | None:
        """Take a step's outcome into the cursor; the run's result if it ended there."""
        self._steps.append(StepRecord(**outcome.model_dump(), step_id=ctx.step_id, started_at=started, ended_at=ended))
        cursor.state = plan.merge(cursor.state, outcome.updates)
        cursor.labels = plan.merge_labels(cursor.labels, outcome)
        cursor.visits[cursor.node] = ctx.visit
        cursor.steps += 1
        if outcome.usage:
            cursor.usage = TokenUsage(
                input_tokens=cursor.usage.input_tokens + outcome.usage.input_tokens,
                output_tokens=cursor.usage.output_tokens + outcome.usage.output_tokens,
            )
            cursor.cost += outcome.cost
        excess = plan.over_budget(cursor.usage, cursor.cost)
        if self._metered:
            excess = excess or self._department_over
        elif outcome.usage and outcome.model:
            excess = excess or await self._record_usage(request, ctx, outcome)
        if outcome.next is not None and excess:
            await self._over_budget(plan, cursor, excess, ctx)
        if outcome.next is None:
            rejected = outcome.approval not in (None, "approve")
            end = None if rejected else cursor.node
            return RunResult(
                status="rejected" if rejected else "completed",
                end=end,
                output=plan.output(end, cursor.state),
                steps=cursor.steps,
                segments=cursor.segment,
                usage=cursor.usage,
                cost=cursor.cost,
                principal=request.principal,
            )
        cursor.node = outcome.next
        return None

    def _unsealed(self) -> bool:
        return self._executor is not None and bool(self._executor.acted)

    async def _seal(self) -> None:
        """The records of the tool steps since the last seal, made durable (any a crash lost
        rewritten from this run's history) before the run waits — for a person or a child run —
        continues as new or ends."""
        if self._executor is None or not self._executor.acted:
            return
        steps, self._executor.acted = self._executor.acted, []
        await workflow.execute_local_activity_method(
            GraphActivities.seal_audit, steps, start_to_close_timeout=timedelta(seconds=30)
        )

    async def _record_usage(self, request: RunRequest, ctx: StepContext, outcome: StepOutcome) -> str | None:
        """Record the step's model usage; why the department is over budget, if it is."""
        assert outcome.usage and outcome.model
        entry = UsageEntry.of(ctx.step_id, ctx.run_id, request.principal, outcome.model, outcome.usage, outcome.cost)
        if self._local_usage:  # one row in the worker's own database: no round trip through the server
            spend = await workflow.execute_local_activity_method(
                GraphActivities.record_usage, entry, start_to_close_timeout=timedelta(seconds=30)
            )
        else:
            spend = await workflow.execute_activity_method(
                GraphActivities.record_usage,
                entry,
                activity_id=f"{ctx.node}/{ctx.visit}/usage",
                start_to_close_timeout=timedelta(seconds=30),
            )
        return spend.exceeded

    async def _over_budget(self, plan: GraphPlan, cursor: Cursor, excess: str, ctx: StepContext) -> None:
        """Stop the run, or — once — ask the budget's approvers whether it may go on."""
        budget = plan.spec.budget
        if cursor.budget_waived:
            return
        if budget and budget.on_exceeded == "escalate":
            node = ApprovalNode(
                type="approval", ask=f"Run is over budget ({excess}); continue?", approvers=budget.approvers
            )
            step = StepContext(run_id=ctx.run_id, node="budget", visit=1)
            decision = await self.request_approval(
                ApprovalRequest(step=step, ask=node.ask, approvers=node.approvers), node
            )
            if decision.outcome == "approve":
                cursor.budget_waived = True
                return
        raise ApplicationError(f"run over budget: {excess}", type="BudgetExceeded", non_retryable=True)

    # -- the executor: effects as activities, approvals as updates ---------------------------

    async def call_model(self, call: ModelCall, node: ModelNode | ClassifyNode | AgentNode) -> ModelReply:
        """A model that stays unreachable or slow through the step's retries is
        :class:`ModelUnavailable`: the cascade moves on to its next model, or to a person."""
        try:
            if self._metered:
                call = call.model_copy(update={"metered": True})
            reply = await self._activity(GraphActivities.model_step, call, node, call.attempt)
            self._department_over = self._department_over or reply.over_budget
            return reply
        except ApplicationError as exc:
            failed = exc.__cause__.cause if isinstance(exc.__cause__, ActivityError) else None
            if exc.type == "ModelUnavailable" or isinstance(failed, TemporalTimeout):
                raise ModelUnavailable(f"{failed or exc}") from exc
            raise

    async def classify(self, call: ClassifyCall, node: ClassifyNode) -> ClassifyReply:
        return await self._activity(GraphActivities.classify_step, call, node)

    async def call_tool(self, call: ToolCall, node: ToolNode | AgentNode) -> ToolReply:
        """Act: reached only through :class:`GatedExecutor`, whose ticket the interceptor carries.
        A tool the gate found read-only runs as a local activity (no round trip through the
        server); runs recorded before that change replay their reads as activities (patching)."""
        ticket = current_ticket.get()
        local = ticket is not None and ticket.read_only and self._local_reads
        return await self._activity(GraphActivities.tool_step, call, node, local=local)

    async def run_graph(self, call: GraphCall, node: SubgraphNode | MapNode) -> GraphReply:
        """A child workflow whose ID is the step's (``<run>/<node>/<visit>[/<item>]``): the same
        principal, the parent's labels and grant (its ceiling); its approvals are its own."""
        assert self._request is not None
        request = RunRequest(
            graph=call.graph,
            input=call.input,
            principal=call.step.principal,
            ceiling=call.grant,
            labels=call.labels,
            publish_approvals=self._request.publish_approvals,
            read_ahead=self._request.read_ahead,
        )
        await self._seal()  # the child may wait for a person
        try:
            result = await workflow.execute_child_workflow(
                GraphWorkflow.run, request, id=call.step.step_id, task_queue=workflow.info().task_queue
            )
        except ChildWorkflowError as exc:
            cause = exc.cause if isinstance(exc.cause, ApplicationError) else None
            raise ApplicationError(
                f"step {call.step.step_id}: graph '{call.graph.name}' failed: {cause or exc}",
                type=cause.type if cause else "StepFailed",
                non_retryable=True,
            ) from exc
        return GraphReply(status=result.status, output=result.output, usage=result.usage, cost=result.cost)

    async def _decide(self, check: GateCheck) -> GateDecision:
        """The gate's decision as a local activity: recorded in history, so a replay reuses it."""
        return await workflow.execute_local_activity_method(
            GraphActivities.check_gate, check, start_to_close_timeout=timedelta(seconds=30)
        )

    async def _decide_and_act(self, check: GateCheck, node: ToolNode | AgentNode) -> DecidedStep:
        """A tool step's first decision, acting at once where it can: a read in the decision's
        local activity, a write in one activity that decides and acts (the gate holds its ticket
        first, so a retry acts on that allowance); under the node's timeout and retry policy as
        the tool's own activity would be. Until the run knows which of its tools write, the local
        activity tells it, and a write it decided acts after it, in the tool's activity."""
        ahead, self._stopped_ahead, spent = self._stopped_ahead, None, 0
        if ahead is not None and ahead.stopped_at == check.call.step.step_id:  # a read-ahead began this step
            if ahead.stopped is not None:  # go on from its decision (and reply)
                return ahead.stopped
            if ahead.failure is not None:  # its read failed: an attempt spent
                spent = 1
                if node.retry.max_attempts == spent:  # none left: failed as its last attempt would fail it
                    raise ApplicationError(ahead.failure.message, type=ahead.failure.kind, non_retryable=True)
        try:
            if check.call.tool in self._writes:
                return await workflow.execute_activity_method(
                    GraphActivities.decide_and_act,
                    check,
                    activity_id=check.call.step.local_id,
                    start_to_close_timeout=node.timeout,
                    retry_policy=_retry_policy(node),
                )
            decided = await workflow.execute_local_activity_method(
                GraphActivities.check_gate_and_read,
                check.model_copy(update={"effects_of": self._unlearned}) if self._unlearned else check,
                start_to_close_timeout=max(node.timeout, timedelta(seconds=30)),
                retry_policy=_retry_policy(node, spent),
            )
        except ActivityError as exc:
            raise _step_failed(check.call.step.step_id, exc) from exc
        if decided.effects:  # until then a write is decided here and acts in its tool's activity
            self._learn(decided.effects)
        return decided

    def _learn(self, effects: dict[str, str]) -> None:
        """What each of the run's tools does, as its first tool step's local activity told it."""
        self._writes |= {name for name, effect in effects.items() if effect != Effect.READ}
        if self._reads is not None:
            self._reads = {name for name, effect in effects.items() if effect == Effect.READ}
        self._unlearned = []

    async def _activity(
        self,
        method: Callable[[GraphActivities, Call], Awaitable[Reply]],
        call: Call,
        node: ActivityNode,
        attempt: int = 0,
        *,
        local: bool = False,
    ) -> Reply:
        """Run a step's call as an activity whose ID is ``node/visit`` (``/n`` for the n-th
        model of a cascade), with the node's timeout and retry policy. An agent's turn is
        ``node/visit/turn/model``, each call it asks for ``node/visit/turn/call``."""
        turn = "/model" if isinstance(call, ModelCall) and call.step.within else ""
        activity_id = call.step.local_id + turn + (f"/{attempt}" if attempt else "")
        execute = workflow.execute_local_activity_method if local else workflow.execute_activity_method
        try:
            return await execute(
                method,
                call,
                activity_id=activity_id,
                start_to_close_timeout=node.timeout,
                retry_policy=_retry_policy(node),
            )
        except ActivityError as exc:
            raise _step_failed(call.step.step_id, exc) from exc

    async def request_approval(self, request: ApprovalRequest, node: ApprovalNode) -> ApprovalAnswer:
        """Calls that need approval at the same time — a map's items over a tool — take turns:
        one is pending at a time, and each answer reaches only the call it names."""
        async with self._approval_turn:
            return await self._park_for_approval(request, node)

    async def _park_for_approval(self, request: ApprovalRequest, node: ApprovalNode) -> ApprovalAnswer:
        """Park until a decision arrives (no worker resources held), escalating on timeout,
        then fall back to the node's default. Pending approvals are marked in the
        ``ChamberlainApproval`` search attribute so the console can list them across runs."""
        assert self._request is not None and self._cursor is not None
        await self._seal()  # a run may wait for days: its records do not
        principal = self._request.principal
        self._pending = PendingApproval(
            step_id=request.step.step_id,
            node=request.step.node,
            ask=request.ask,
            approvers=node.approvers,
            requested_by=principal.id if principal else None,
            sensitive=self._cursor.labels.found_in(request.ask),
        )
        publish = self._request.publish_approvals
        if publish:
            workflow.upsert_search_attributes([APPROVAL_STATE.value_set("pending")])
        groups = [node.approvers, *([node.escalate_to] if node.escalate_to else [])]
        for i, group in enumerate(groups):
            self._pending.approvers, self._pending.escalated = group, i > 0
            self._pending.deadline = workflow.now() + node.timeout
            try:
                await self._wait_for_decision(node.timeout)
                break
            except TimeoutError:
                note = f"{workflow.now():%Y-%m-%d %H:%M} no decision from {', '.join(group)} within {node.timeout}"
                self._pending.reminders.append(note)
                workflow.logger.info("approval %s: %s", request.step.step_id, note)
        decision = self._decision
        self._approver = decision.approver if decision else None
        answer = decision or ApprovalAnswer(step_id=request.step.step_id, outcome=node.default, reason="timeout")
        await self._audit_approval(request, answer)
        # No `finally`: a cancelled run ends here anyway (the console lists running runs only), and
        # workflow calls in a `finally` would run when the SDK tears a cached run down.
        self._pending, self._decision = None, None
        if publish:
            workflow.upsert_search_attributes([APPROVAL_STATE.value_set("none")])
        return answer

    async def _wait_for_decision(self, timeout: timedelta) -> None:
        """Wait up to ``timeout`` for the decision (``TimeoutError`` then), sealing meanwhile the
        steps other branches of the run complete (a map's items): no record waits for a person."""
        deadline = workflow.now() + timeout
        while self._decision is None:
            remaining = deadline - workflow.now()
            if remaining <= timedelta(0):
                raise TimeoutError
            await workflow.wait_condition(lambda: self._decision is not None or self._unsealed(), timeout=remaining)
            await self._seal()

    async def _audit_approval(self, request: ApprovalRequest, answer: ApprovalAnswer) -> None:
        """An approval is a decision like the gate's: it goes to the audit log, from an activity."""
        entry = AuditEntry(
            run_id=request.step.run_id,
            step_id=request.step.step_id,
            attempt=self._approvals[answer.step_id] + 1,
            kind="approval",
            principal=who(self._approver) if self._approver else "timeout",
            action="approval",
            resource=f'Step::"{request.step.node}"',
            args={"ask": request.ask, "reason": answer.reason},
            decision=answer.outcome,
        )
        self._approvals[answer.step_id] += 1
        await workflow.execute_local_activity_method(
            GraphActivities.audit, entry, start_to_close_timeout=timedelta(seconds=30)
        )

    @workflow.update(name="decide")
    async def decide(self, decision: ApprovalAnswer) -> str:
        self._decision = decision
        return decision.outcome

    @decide.validator
    def _validate_decision(self, decision: ApprovalAnswer) -> None:
        """Rejects, before anything reaches history, a decision that may not be taken."""
        pending = self._pending
        if pending is None or pending.step_id != decision.step_id:
            raise ValueError(f"step {decision.step_id} has no pending approval")
        if self._decision is not None:
            raise ValueError(f"step {decision.step_id} is already decided")
        if decision.approver is None:
            raise ValueError("an answer names its approver")
        if pending.requested_by is not None and decision.approver.id == pending.requested_by:
            raise ValueError("the requester may not approve their own request")
        if not set(decision.approver.roles) & set(pending.approvers):
            raise ValueError(f"{decision.approver.id} lacks every approver role of {pending.approvers}")
        owner = self._request.principal if self._request else None
        tenant = owner.tenant if owner else None
        if decision.approver.tenant != tenant:  # a run without a tenant: approvers without one
            raise ValueError(f"{decision.approver.id} is not of the run's tenant {tenant or '(none)'}")
        node = self._request.graph.nodes.get(pending.node) if self._request else None
        if isinstance(node, ApprovalNode) and node.output and decision.outcome == "approve":
            try:  # an approval that asks for values (a reply) gets them, valid, or is not decided
                approval_values(pending.node, node, decision.values or {})
            except ModelOutputInvalid as exc:
                raise ValueError(str(exc)) from exc

    @workflow.query(name="progress")
    def progress(self) -> RunProgress:
        return RunProgress(node=self._node, steps=self._steps, pending_approval=self._pending)
