"""The in-process engine behind the same permission gate and audit log as the durable one.

``chamberlain graph run`` and tests iterate on a graph in one process; its writes are as
real as a worker's, so they pass the same :class:`~workflows.gate.GatedExecutor`, with
:meth:`Gate.check` as its ``decide``. :class:`GatedLocalExecutor` is the in-process effect
site, as the activities are the durable one: model calls with the gate's model permit, tool
calls only with a valid ticket, every effect audited.
"""

from __future__ import annotations

from typing import Any

from chamberlain.agents._compiler import Approver, LocalExecutor, run_in_process
from chamberlain.agents._models import ModelRegistry, call_model
from chamberlain.agents._plan import RunOutcome, StepOutcome
from chamberlain.agents._spec import AgentNode, ClassifyNode, GraphSpec, ModelNode, ToolNode
from chamberlain.agents._steps import GraphCall, ModelCall, ModelReply, StepExecutor, ToolCall, ToolReply
from chamberlain.workflows._gate import Gate, GatedExecutor, current_ticket
from chamberlain.workflows._types import Principal


class GatedLocalExecutor(LocalExecutor):
    """Where a gated in-process run's effects happen: the counterpart of the model and tool activities."""

    def __init__(
        self, gate: Gate, models: ModelRegistry, principal: Principal | None, approve: Approver | None = None
    ) -> None:
        super().__init__(models, gate.tools, approve)
        self.gate = gate
        self.permit = gate.model_permit(principal)

    async def call_model(self, call: ModelCall, node: ModelNode | ClassifyNode | AgentNode) -> ModelReply:
        return await call_model(self.models, call, self.permit, self.tools)

    async def call_tool(self, call: ToolCall, node: ToolNode | AgentNode) -> ToolReply:
        return await self.gate.act(call, current_ticket.get(), attempt=1)

    def for_child(self, call: GraphCall) -> StepExecutor:
        """A child graph's steps pass the same gate, its grant within the parent's."""
        principal = call.step.principal
        return GatedExecutor(self, self.gate.check, principal=principal, graph=call.graph, ceiling=call.grant)


async def run_gated_in_process(
    spec: GraphSpec,
    values: dict[str, Any],
    *,
    gate: Gate,
    models: ModelRegistry,
    principal: Principal | None = None,
    approve: Approver | None = None,
    trace: list[StepOutcome] | None = None,
) -> RunOutcome:
    """Run a graph once in this process with LangGraph, every step through ``gate`` (its
    tools, policies and audit log) for ``principal``. ``approve`` answers approvals; an
    approval only counts for the gate with ``approver`` set to the approving person."""
    if not isinstance(gate, Gate):
        raise TypeError("run_gated_in_process needs gate=Gate(...): an in-process run writes for real too")
    inner = GatedLocalExecutor(gate, models, principal, approve)
    executor = GatedExecutor(inner, gate.check, principal=principal, graph=spec)
    return await run_in_process(spec, values, executor=executor, principal=principal, trace=trace)
