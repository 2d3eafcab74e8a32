"""The typed messages of a step, shared by the in-process runner and the Temporal activities.

Each model or tool step is one request and one reply, both single Pydantic objects, so a
step crosses Temporal's boundary intact and the two engines exchange exactly the same data.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import BaseModel

from agents.messages import Message
from agents.spec import ApprovalNode, ModelNode, OutputField, Tier, ToolNode


class StepContext(BaseModel):
    """Where a step is: its ID is the run ID + node + visit count, stable across replays
    (never LangGraph's checkpoint or task IDs, which change on every replay)."""

    run_id: str
    node: str
    visit: int

    @property
    def step_id(self) -> str:
        return f"{self.run_id}/{self.node}/{self.visit}"


class TokenUsage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0


class ModelCall(BaseModel):
    step: StepContext
    messages: list[Message]
    tier: Tier | None = None
    model: str | None = None
    output: dict[str, OutputField] | None = None


class ModelReply(BaseModel):
    message: Message
    structured: dict[str, Any] | None = None
    model: str
    usage: TokenUsage = TokenUsage()


class ToolCall(BaseModel):
    step: StepContext
    tool: str
    args: dict[str, Any]

    @property
    def idempotency_key(self) -> str:
        return self.step.step_id


class ToolReply(BaseModel):
    output: dict[str, Any]


class ApprovalRequest(BaseModel):
    step: StepContext
    ask: str
    approvers: list[str]
    escalate_to: list[str] = []
    requested_by: str | None = None


class ApprovalDecision(BaseModel):
    step_id: str
    outcome: Literal["approve", "reject"]
    approver: str
    reason: str = ""


class StepExecutor(Protocol):
    """What runs the effectful steps: in-process for iteration, Temporal activities when durable."""

    async def call_model(self, call: ModelCall, node: ModelNode) -> ModelReply: ...

    async def call_tool(self, call: ToolCall, node: ToolNode) -> ToolReply: ...

    async def request_approval(self, request: ApprovalRequest, node: ApprovalNode) -> ApprovalDecision: ...
