"""Run evaluation cases through the real workflow: Temporal, a worker, the permission gate.

Each case gets a fresh store (a copy of one seeded template), its own audit log and its own
worker on its own task queue, so one case's refund never changes another's answer and the
audit log says exactly what that case did. A person asked by the run (an approval, a
handoff) is answered as the case says and counted as an escalation. Tools are live, live
and recorded (``record``), or answered from a recording with no writes (``replay``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.service import RPCError

from chamberlain.agents._models import ModelRegistry
from chamberlain.agents._spec import ApprovalNode, FieldType, GraphSpec, ModelNode, OutputField, ToolNode
from chamberlain.agents._steps import ApprovalAnswer
from chamberlain.tools._adapter import Effect
from chamberlain.tools._recording import Recording, RecordingTools, ReplayingTools, current_step
from chamberlain.tools._registry import ToolRegistry
from chamberlain.workflows._audit import AuditLog
from chamberlain.workflows._gate import Gate, GateCheck
from chamberlain.workflows._graph_workflow import GraphWorkflow
from chamberlain.workflows._policy import PolicyEngine, ResourceRef
from chamberlain.workflows._runs import decide, progress, start_run
from chamberlain.workflows._types import PendingApproval, Principal, RunProgress, RunResult
from chamberlain.workflows._worker import create_worker
from chamberlain.workflows.evaluation.cases import Case, Outcome

Mode = Literal["live", "record", "replay"]
ToRun = Callable[[Case], tuple[dict[str, Any], Principal | None]]
APPROVER = "evaluation"
POLL = 0.05
log = logging.getLogger("chamberlain.evaluation")
MAX_POLL = 0.5
CASE_TIMEOUT = 600.0


def case_input(case: Case) -> tuple[dict[str, Any], Principal | None]:
    """A case that gives the graph's input directly (an ``event`` needs its webhook source)."""
    if case.input is None:
        raise ValueError(f"case {case.id}: has an 'event' but no webhook source was given to map it (--source)")
    return case.input, case.principal


@dataclass(frozen=True)
class Subject:
    """What is evaluated: a graph and a model configuration, over fresh stores of the app's tools."""

    name: str
    graph: GraphSpec
    models: ModelRegistry
    policies: PolicyEngine
    store: Callable[[Path], ToolRegistry]
    to_run: ToRun = case_input


@dataclass
class Tape:
    """Where tool answers come from: live, live and recorded, or replayed from a recording."""

    mode: Mode = "live"
    recording: Recording | None = None
    live_reads: bool = False
    gone_live: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.mode != "live" and self.recording is None:
            raise ValueError(f"{self.mode} needs a recording file")

    def tools(self, inner: ToolRegistry, run_key: Callable[[str], str]) -> ToolRegistry:
        if self.mode == "live" or self.recording is None:
            return inner
        if self.mode == "record":
            return RecordingTools(inner, self.recording, run_key)
        replaying = ReplayingTools(inner, self.recording, run_key, live_reads=self.live_reads)
        self.gone_live = replaying.missing  # the same list: what went live shows up here
        return replaying


class StepScopedGate(Gate):
    """The gate, naming the step whose resource it resolves (:data:`tools.recording.current_step`),
    so a recorded run's resources are recorded and replayed per step."""

    async def _resource(self, check: GateCheck) -> ResourceRef:
        scope = current_step.set(check.call.step.step_id)
        try:
            return await super()._resource(check)
        finally:
            current_step.reset(scope)


def sqlite_store(tools_over: Callable[[str], ToolRegistry], folder: Path) -> Callable[[Path], ToolRegistry]:
    """Fresh stores for an app whose tools live in one SQLite database: ``tools_over(url)`` seeds
    the template once (in ``folder``); each case then gets a copy of it."""
    template = folder / "template.sqlite"

    def store(case_folder: Path) -> ToolRegistry:
        if not template.exists():
            folder.mkdir(parents=True, exist_ok=True)
            tools_over(f"sqlite:///{template}")
        copy = case_folder / "store.sqlite"
        with sqlite3.connect(template) as source, sqlite3.connect(copy) as target:
            source.backup(target)  # consistent, WAL included
        return tools_over(f"sqlite:///{copy}")

    return store


def approval_values(node: ApprovalNode | ModelNode) -> dict[str, Any]:
    """Placeholder values for a handoff that asks for values (a reply, or the output a person
    gives in a model's stead), valid for its output."""
    return {name: _placeholder(spec) for name, spec in (node.output or {}).items()}


def _asks_values(node: Any, pending: PendingApproval) -> bool:
    """A handoff answered with values: an approval node with an output, or a model's cascade
    reaching ``human`` (its pending approval names the model node and the ``human`` roles)."""
    if isinstance(node, ApprovalNode):
        return bool(node.output)
    if isinstance(node, ModelNode) and node.output and "human" in node.cascade:
        return bool(set(pending.approvers) & set(node.human))
    return False


def _placeholder(spec: OutputField) -> Any:
    if spec.enum:
        return spec.enum[0]
    return {FieldType.INT: 0, FieldType.FLOAT: 0.0, FieldType.BOOL: False, FieldType.LIST: []}.get(
        spec.type, "answered during evaluation"
    )


def safe_name(case_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", case_id)[:80] + "-" + uuid.uuid4().hex[:4]


async def evaluate(
    client: Client,
    subject: Subject,
    cases: Sequence[Case],
    folder: Path,
    tape: Tape | None = None,
    *,
    on_case: Callable[[Case, Outcome], Awaitable[None] | None] | None = None,
    timeout: float = CASE_TIMEOUT,
) -> list[Outcome]:
    """Run every case, one after another, and say what each run did (a run longer than
    ``timeout`` seconds is stopped and counted as failed)."""
    tape = tape or Tape()
    session = uuid.uuid4().hex[:8]
    secret = secrets.token_hex(32).encode()
    outcomes = []
    for case in cases:
        place = folder / subject.name / safe_name(case.id)
        outcome = await run_case(client, subject, case, place, tape, session, secret, timeout)
        if tape.mode == "record" and tape.recording is not None:
            tape.recording.append("outcome", case.id, outcome=outcome.model_dump(mode="json"))
        outcomes.append(outcome)
        if on_case is not None and (waiting := on_case(case, outcome)) is not None:
            await waiting
    return outcomes


async def run_case(
    client: Client,
    subject: Subject,
    case: Case,
    folder: Path,
    tape: Tape,
    session: str,
    secret: bytes,
    timeout: float = CASE_TIMEOUT,
) -> Outcome:
    folder.mkdir(parents=True, exist_ok=True)
    values, principal = subject.to_run(case)
    prefix = f"eval-{session}-{subject.name}/"
    tools = tape.tools(subject.store(folder), lambda run_id: run_id.removeprefix(prefix))
    audit = AuditLog(f"sqlite:///{folder / 'audit.sqlite'}")
    gate = StepScopedGate(subject.policies, audit, tools, secret)
    queue = f"eval-{session}-{uuid.uuid4().hex[:6]}"
    run_id = prefix + case.id
    escalations: list[str] = []
    async with create_worker(client, models=subject.models, tools=tools, gate=gate, task_queue=queue):
        started = time.perf_counter()
        handle = await start_run(client, subject.graph, values, run_id=run_id, principal=principal, task_queue=queue)
        result, error = await _finish(handle, subject.graph, case, escalations, timeout)
        latency = time.perf_counter() - started
        view = await _progress(handle)
    state = {name: spec.default for name, spec in subject.graph.state.items()} | values
    for step in view.steps if view else []:
        state.update(step.updates)
    if view is None and result is not None:  # the steps could not be read: the end's output at least
        state.update(result.output)
    if result is not None:
        tokens, cost = result.usage.input_tokens + result.usage.output_tokens, result.cost
    else:  # a failed run spent tokens too: count its steps'
        used = [s for s in (view.steps if view else []) if s.usage]
        tokens = sum(s.usage.input_tokens + s.usage.output_tokens for s in used if s.usage)
        cost = sum(s.cost for s in used)
    outcome = Outcome(
        case=case.id,
        status="failed" if result is None else result.status,
        end=result.end if result else None,
        state=state,
        escalations=escalations,
        latency=round(latency, 4),
        error=error,
        tokens=tokens,
        cost=cost,
    )
    return _audited(outcome, audit, subject.graph, tools)


async def _finish(
    handle: WorkflowHandle[GraphWorkflow, RunResult],
    graph: GraphSpec,
    case: Case,
    escalations: list[str],
    timeout: float,
) -> tuple[RunResult | None, str | None]:
    """Wait for the run, answering every person it asks as the case says. A run that outlives
    ``timeout`` or asks something the case cannot answer is terminated and reported as failed."""
    result = asyncio.ensure_future(handle.result())
    deadline, delay = time.monotonic() + timeout, POLL
    try:
        while not result.done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no result after {timeout:g} s")
            await asyncio.wait([result], timeout=delay)
            if result.done():
                break
            delay = min(MAX_POLL, delay * 1.5)  # quick for quick runs, gentle on slow models
            pending = view.pending_approval if (view := await _progress(handle)) else None
            if pending is not None and (not escalations or escalations[-1] != pending.step_id):
                escalations.append(pending.step_id)
                await decide(handle, _answer(pending, graph, case))
                delay = POLL
    except (TimeoutError, WorkflowUpdateFailedError) as exc:
        result.cancel()
        with contextlib.suppress(RPCError):  # it may have ended meanwhile: it is over either way
            await handle.terminate(f"evaluation: {exc}")
        cause = (
            f"approval at {escalations[-1]} could not be answered: {exc.cause}"
            if isinstance(exc, WorkflowUpdateFailedError)
            else str(exc)
        )
        return None, f"EvaluationAborted: {cause}"
    try:
        return result.result(), None
    except WorkflowFailureError as exc:
        return None, str(exc.cause or exc)


async def _progress(handle: WorkflowHandle[GraphWorkflow, RunResult]) -> RunProgress | None:
    """The run's progress, or ``None`` when it cannot be read (stopped before its first step,
    or the worker could not answer the query): the evaluation goes on without it."""
    try:
        return await progress(handle)
    except (WorkflowQueryFailedError, RPCError) as exc:
        log.warning("progress of %s unreadable: %s", handle.id, exc)
        return None


def _answer(pending: PendingApproval, graph: GraphSpec, case: Case) -> ApprovalAnswer:
    node = graph.nodes.get(pending.node)
    values = case.approval.values
    if values is None and isinstance(node, ApprovalNode | ModelNode) and _asks_values(node, pending):
        values = approval_values(node)
    approver = Principal(id=APPROVER, roles=list(pending.approvers))
    return ApprovalAnswer(step_id=pending.step_id, outcome=case.approval.outcome, approver=approver, values=values)


def _audited(outcome: Outcome, audit: AuditLog, graph: GraphSpec, tools: ToolRegistry) -> Outcome:
    """Effects, denials and money paid out, as the run's audit log has them."""
    effects, names, paid, denials, done = [], [], 0.0, 0, set()
    for record in audit.records():
        if record.kind == "decision" and record.decision == "deny":
            denials += 1
        if record.kind != "effect" or record.step_id in done:
            continue
        done.add(record.step_id)
        node = graph.nodes.get(record.step_id.rsplit("/", 2)[-2])
        tool = node.tool if isinstance(node, ToolNode) else None
        effect = tools[tool].effect if tool is not None and tool in tools else None
        if effect is Effect.READ:  # an allowed read is audited with its effect too: it changed nothing
            continue
        effects.append(record.action)
        names.append(tool or record.action)
        if effect is Effect.IRREVERSIBLE and record.amount is not None:
            paid += record.amount
    steps = [s.rsplit("/", 2)[-2] for s in outcome.escalations]
    return outcome.model_copy(
        update={
            "effects": effects,
            "tools": names,
            "denials": denials,
            "refund_total": round(paid, 2),
            "escalations": steps,
        }
    )
