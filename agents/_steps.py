"""The typed messages of a step, shared by the in-process runner and the Temporal activities.

Each model or tool step is one request and one reply, both single Pydantic objects, so a
step crosses Temporal's boundary intact and the two engines exchange exactly the same data.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from chamberlain.agents._labels import DataLabels
from chamberlain.agents._messages import Message
from chamberlain.agents._spec import (
    AgentNode,
    ApprovalNode,
    ClassifyNode,
    GraphSpec,
    MapNode,
    ModelNode,
    OutputField,
    SubgraphNode,
    Tier,
    ToolNode,
)


class Principal(BaseModel):
    """Who a run acts for (a user, or a service such as a webhook source), or who decides.
    ``clearance``: the data labels this principal may see in the console and logs."""

    id: str
    kind: Literal["user", "service"] = "user"
    roles: list[str] = []
    department: str | None = None
    tenant: str | None = None
    clearance: list[str] = []
    customer: str | None = Field(
        None,
        min_length=1,
        description="the customer this principal acts for (a webhook from a customer's channel); "
        "policies restrict it to that customer's records",
    )


class StepContext(BaseModel):
    """Where a step is, and for whom: its ID is the run ID + node + visit count, stable
    across replays (never LangGraph's checkpoint or task IDs, which change on every replay).
    ``within`` places a part of a step: an agent's turn and call (``3/1``), a map's item."""

    run_id: str
    node: str
    visit: int
    principal: Principal | None = None
    within: tuple[int, ...] = ()

    @property
    def local_id(self) -> str:
        """The step's ID within its run: ``node/visit`` and its parts."""
        return "/".join([self.node, str(self.visit), *map(str, self.within)])

    @property
    def step_id(self) -> str:
        return f"{self.run_id}/{self.local_id}"

    def part(self, *within: int) -> StepContext:
        """A part of this step: an agent's turn (``part(turn)``), a call in it (``part(turn, call)``)."""
        return self.model_copy(update={"within": (*self.within, *within)})


class TokenUsage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0


class ModelCall(BaseModel):
    """One model call of a step; ``labels`` are the classification labels of the data in it,
    ``sensitive`` the labelled values its messages contain (what masking would hide),
    ``attempt`` its place in the node's cascade."""

    step: StepContext
    messages: list[Message]
    tier: Tier | None = None
    model: str | None = None
    output: dict[str, OutputField] | None = None
    labels: list[str] = []
    sensitive: dict[str, list[str]] = {}
    attempt: int = 0
    tools: list[str] = Field([], description="the tools an agent's turn may ask for; the worker describes them")
    metered: bool = Field(
        False, description="record the call's usage where it runs (the durable engine's model activity)"
    )


class RequestedCall(BaseModel):
    """A tool call a model asked for: ``id`` pairs it with its result in the conversation."""

    id: str
    tool: str
    args: dict[str, Any]


class ModelReply(BaseModel):
    """The answer, or why there is none: ``skipped`` (the model may not see the data, nothing
    was sent) or ``error`` (the output failed validation, even after one repair)."""

    message: Message | None = None
    structured: dict[str, Any] | None = None
    model: str
    usage: TokenUsage = TokenUsage()
    cost: float = 0.0
    error: str | None = None
    repaired: bool = False
    skipped: str | None = None
    masked: list[str] = []
    tool_calls: list[RequestedCall] = []
    over_budget: str | None = Field(None, description="a metered call: why its department is now over budget")

    @property
    def confidence(self) -> float:
        """1 for valid output at once, 0.5 when it needed repair, 0 without valid output."""
        if self.skipped or self.error or self.message is None:
            return 0.0
        return 0.5 if self.repaired else 1.0


class ClassifyCall(BaseModel):
    step: StepContext
    text: str
    classes: dict[str, list[str]]


class ClassifyReply(BaseModel):
    label: str
    margin: float
    scores: dict[str, float]


class ToolCall(BaseModel):
    """``labels``: the classification labels of the state the arguments were made from."""

    step: StepContext
    tool: str
    args: dict[str, Any]
    labels: list[str] = []

    @property
    def idempotency_key(self) -> str:
        return self.step.step_id


class ToolFailure(BaseModel):
    """A refusal the graph may act on: arguments that failed validation (the model may fix
    them) or a business rule that said no. ``kind`` is the tool error's class name."""

    kind: str
    message: str


class ToolReply(BaseModel):
    """``labels``: the classification labels of the output's fields, as the adapter declares them."""

    output: dict[str, Any] = {}
    labels: dict[str, list[str]] = {}
    error: ToolFailure | None = None
    args: dict[str, Any] | None = Field(None, description="the arguments that ran, when an approver edited them")


class GraphCall(BaseModel):
    """A child run of a subgraph or map node: ``grant`` is the parent's, which the child's must
    stay within; ``labels`` what the parent knows of the data it passes."""

    step: StepContext
    graph: GraphSpec
    input: dict[str, Any]
    grant: list[str] | None = None
    labels: DataLabels = DataLabels()


class GraphReply(BaseModel):
    status: str
    output: dict[str, Any] = {}
    usage: TokenUsage = TokenUsage()
    cost: float = 0.0


class ApprovalRequest(BaseModel):
    step: StepContext
    ask: str
    approvers: list[str]
    escalate_to: list[str] = []
    requested_by: str | None = None


ApprovalOutcome = Literal["approve", "reject", "request_changes"]
"""What a person answers to an approval; a request for changes goes down the reject path unless the node routes it."""


class ApprovalAnswer(BaseModel):
    """A person's answer to an approval: sent to a durable run as its ``decide`` update, or
    returned by an in-process approver. ``values`` carries the output when a human stands in
    for a model."""

    step_id: str
    outcome: ApprovalOutcome
    approver: Principal | None = Field(
        None,
        description="who answered, with their roles (the gate checks the step again with them); "
        "None when nobody did (a timeout's default), and then the gate lets nothing through",
    )
    reason: str = ""
    values: dict[str, Any] | None = Field(None, description="the output, when a person answers for a model")

    @property
    def by(self) -> str:
        """Who answered, for notes and errors."""
        return self.approver.id if self.approver else "nobody"


class StepExecutor(Protocol):
    """What runs the effectful steps: in-process for iteration, Temporal activities when durable."""

    async def call_model(self, call: ModelCall, node: ModelNode | ClassifyNode | AgentNode) -> ModelReply: ...

    async def classify(self, call: ClassifyCall, node: ClassifyNode) -> ClassifyReply: ...

    async def call_tool(self, call: ToolCall, node: ToolNode | AgentNode) -> ToolReply: ...

    async def run_graph(self, call: GraphCall, node: SubgraphNode | MapNode) -> GraphReply: ...

    async def request_approval(self, request: ApprovalRequest, node: ApprovalNode) -> ApprovalAnswer: ...
