"""The model and tool activities: where every effect of a graph run happens.

Errors are translated here into Temporal's retry vocabulary: what the graph's author or
the backend said "no" to is non-retryable; what may work later is retried by Temporal
under the node's retry policy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from chamberlain.agents._classifier import ExemplarClassifier
from chamberlain.agents._exceptions import ModelOutputInvalid, ModelRequestRejected, ModelUnavailable
from chamberlain.agents._models import ModelRegistry, call_model
from chamberlain.agents._steps import (
    ClassifyCall,
    ClassifyReply,
    ModelCall,
    ModelReply,
    TokenUsage,
    ToolCall,
    ToolReply,
)
from chamberlain.tools._exceptions import UnknownTool
from chamberlain.tools._registry import ToolRegistry
from chamberlain.workflows._audit import AuditEntry
from chamberlain.workflows._gate import (
    ActedStep,
    DecidedStep,
    Gate,
    GateCheck,
    GateDecision,
    NoValidTicket,
    current_ticket,
    model_step_id,
)
from chamberlain.workflows._read_ahead import ReadAhead, ReadRun, ReadsAhead
from chamberlain.workflows._usage import DepartmentSpend, UsageEntry, UsageLedger


class GraphActivities:
    """Activities bound to the models and tools this worker offers, behind its permission gate
    (required: with no gate there is nothing to decide with, so nothing runs)."""

    def __init__(
        self, models: ModelRegistry, tools: ToolRegistry, usage: UsageLedger | None = None, *, gate: Gate
    ) -> None:
        if not isinstance(gate, Gate):
            raise TypeError("GraphActivities needs gate=Gate(...): every step is checked and audited")
        if gate.tools is not tools:
            raise ValueError("the gate decides for another ToolRegistry than this worker offers: build both from one")
        self.models = models
        self.tools = tools
        self.usage = usage
        self.gate = gate
        self.classifier = ExemplarClassifier()
        self.reads_ahead = ReadsAhead(gate)

    @activity.defn(name="chamberlain.gate")
    async def check_gate(self, check: GateCheck) -> GateDecision:
        """The permission gate's decision for a tool step (run as a local activity)."""
        return await self.gate.check(check)

    @activity.defn(name="chamberlain.gate_read")
    async def check_gate_and_read(self, check: GateCheck) -> DecidedStep:
        """A tool step's decision and, when the tool only reads and is allowed, the read itself
        (one local activity for a read step); what the run's tools do, if it asks."""
        decided = await self._decide_and_act(check, writes=False)
        return decided.model_copy(update={"effects": self._effects(check.effects_of)}) if check.effects_of else decided

    @activity.defn(name="chamberlain.read_ahead")
    async def read_ahead(self, ahead: ReadAhead) -> ReadRun:
        """Reads in a row, each decided and read as in its own local activity (one local
        activity for them all; :mod:`workflows.read_ahead`)."""
        return await self.reads_ahead.run(ahead, activity.info().attempt)

    @activity.defn(name="chamberlain.decide_and_act")
    async def decide_and_act(self, check: GateCheck) -> DecidedStep:
        """A tool step's decision and, when it is allowed, the effect (one activity for a write
        step; a retry acts on the ticket the first attempt held)."""
        return await self._decide_and_act(check, writes=True)

    async def _decide_and_act(self, check: GateCheck, *, writes: bool) -> DecidedStep:
        try:
            return await self.gate.decide_and_act(check, activity.info().attempt, writes=writes)
        except NoValidTicket as exc:
            raise ApplicationError(str(exc), type="PermissionDenied", non_retryable=True) from exc
        except UnknownTool as exc:
            raise ApplicationError(str(exc), type="UnknownTool", non_retryable=True) from exc

    @activity.defn(name="chamberlain.tool_effects")
    async def tool_effects(self, tools: list[str]) -> dict[str, str]:
        """What each of a run's tools does (read, write, irreversible) as this worker offers it:
        recorded in the run's history, so a replay sends each step the way it went (runs started
        before a run's first tool step told it, :meth:`check_gate_and_read`)."""
        return self._effects(tools)

    def _effects(self, tools: list[str]) -> dict[str, str]:
        return {name: self.tools[name].effect.value for name in tools if name in self.tools}

    @activity.defn(name="chamberlain.audit")
    async def audit(self, entry: AuditEntry) -> None:
        """Append a decision the workflow received (an approval) to the audit log, once."""
        await self.gate.record(entry)

    @activity.defn(name="chamberlain.audit_seal")
    async def seal_audit(self, steps: list[ActedStep]) -> int:
        """Make the records of a run's tool steps durable, rewriting any a crash lost (run as a
        local activity before the run parks, continues or ends)."""
        try:
            return await self.gate.seal(steps)
        except NoValidTicket as exc:
            raise ApplicationError(str(exc), type="PermissionDenied", non_retryable=True) from exc

    @activity.defn(name="chamberlain.model_step")
    async def model_step(self, call: ModelCall) -> ModelReply:
        """A model call behind the gate; a metered call's usage is recorded here, once, and the
        reply says if its department is over budget now."""
        try:
            reply = await call_model(self.models, call, self.gate.model_permit(call.step.principal), self.tools)
        except ModelUnavailable as exc:
            delay = timedelta(seconds=exc.retry_after) if exc.retry_after is not None else None
            raise ApplicationError(str(exc), type="ModelUnavailable", next_retry_delay=delay) from exc
        except (ModelRequestRejected, ModelOutputInvalid) as exc:
            raise ApplicationError(str(exc), type=type(exc).__name__, non_retryable=True) from exc
        except LookupError as exc:
            raise ApplicationError(str(exc), type="ModelNotFound", non_retryable=True) from exc
        if not call.metered or reply.usage == TokenUsage():
            return reply
        step = call.step
        entry = UsageEntry.of(model_step_id(call), step.run_id, step.principal, reply.model, reply.usage, reply.cost)
        spend = await self.record_usage(entry)
        return reply.model_copy(update={"over_budget": spend.exceeded})

    @activity.defn(name="chamberlain.record_usage")
    async def record_usage(self, entry: UsageEntry) -> DepartmentSpend:
        """Write a step's usage once; answer with its department's spend against its budget."""
        if self.usage is None:
            return DepartmentSpend(department=entry.department, spent=0.0, limit=None)
        return await asyncio.to_thread(self.usage.record, entry)

    @activity.defn(name="chamberlain.classify_step")
    async def classify_step(self, call: ClassifyCall) -> ClassifyReply:
        return self.classifier.classify(call)

    @activity.defn(name="chamberlain.tool_step")
    async def tool_step(self, call: ToolCall) -> ToolReply:
        """Act only with the ticket the workflow's decision signed (carried in a header)."""
        try:
            return await self.gate.act(call, current_ticket.get(), activity.info().attempt)
        except NoValidTicket as exc:
            raise ApplicationError(str(exc), type="PermissionDenied", non_retryable=True) from exc
        except UnknownTool as exc:
            raise ApplicationError(str(exc), type="UnknownTool", non_retryable=True) from exc

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.model_step,
            self.classify_step,
            self.tool_step,
            self.record_usage,
            self.check_gate,
            self.check_gate_and_read,
            self.read_ahead,
            self.decide_and_act,
            self.tool_effects,
            self.audit,
            self.seal_audit,
        ]
