"""The declarative agent graph, as Pydantic models.

The same models back the YAML format (see :mod:`agents.loader`) and Python-built
graphs, so editors autocomplete specs through the JSON schema and a graph crosses
Temporal's boundary as validated data. Structure lives here; cross-references
(unknown nodes, fields, tools, cycles) are checked in :mod:`agents.validation`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema, model_validator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _parse_duration(value: Any) -> Any:
    """Accept ``"30s"``, ``"5m"``, ``"2h"``, ``"1d"`` and ``"250ms"`` beside what Pydantic accepts."""
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    return value


def _format_duration(value: timedelta) -> str:
    """The shortest way to write ``value`` that :func:`_parse_duration` reads back: ``1h``, ``90s``, ``500ms``."""
    seconds = value.total_seconds()
    for unit in ("d", "h", "m", "s"):
        if seconds >= _UNITS[unit] and seconds % _UNITS[unit] == 0:
            return f"{int(seconds // _UNITS[unit])}{unit}"
    return f"{seconds * 1000:g}ms" if seconds else "0s"


Duration = Annotated[
    timedelta,
    BeforeValidator(_parse_duration),
    PlainSerializer(_format_duration, return_type=str, when_used="json"),
    WithJsonSchema({"type": ["string", "number"], "description": "30s, 5m, 2h, 1d, 250ms, or seconds"}),
]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FieldType(StrEnum):
    """The types a state field may have; ``messages`` holds LangChain messages."""

    STR = "str"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    LIST = "list"
    DICT = "dict"
    MESSAGES = "messages"
    ANY = "any"


class Tier(StrEnum):
    """Where a model runs, which is what decides the data it may see."""

    EDGE = "edge"
    PRIVATE = "private"
    EXTERNAL = "external"


def model_or_tier(candidate: str) -> tuple[str | None, Tier | None]:
    """A cascade entry as a model name or a tier (``""``: any registered model)."""
    if candidate in Tier.__members__.values():
        return None, Tier(candidate)
    return candidate or None, None


class StateField(_Spec):
    """A typed field of the graph state, with the classification labels of its values."""

    type: FieldType = FieldType.STR
    default: Any = None
    labels: list[str] = []
    description: str = ""


class RetrySpec(_Spec):
    """How an activity step is retried; maps onto Temporal's retry policy."""

    max_attempts: int = Field(3, ge=1)
    initial_interval: Duration = timedelta(seconds=1)
    backoff: float = Field(2.0, ge=1.0)
    max_interval: Duration = timedelta(seconds=30)


class Branch(_Spec):
    """A conditional edge: go ``to`` a node when ``when`` holds (no ``when``: the default)."""

    when: str | None = None
    to: str


Next = str | list[Branch] | None


class _Node(_Spec):
    description: str = ""
    next: Next = None


class _ActivityNode(_Node):
    timeout: Duration = timedelta(seconds=60)
    retry: RetrySpec = RetrySpec()


class OutputField(_Spec):
    """One field of a model node's structured output; constraints become JSON-schema constraints."""

    type: FieldType = FieldType.STR
    description: str = ""
    enum: list[str] | None = None
    max_length: int | None = Field(None, alias="maxLength", ge=1)
    pattern: str | None = None


class ModelNode(_ActivityNode):
    """Ask a model. ``output`` fields are written to the state fields of the same names;
    ``write`` names one field that receives the answer's text (or the message itself).

    ``cascade`` escalates, in order, through tiers or model names and finally ``human``
    (someone with a ``human`` role answers) while the output is invalid or its confidence
    is below ``min_confidence`` — skipping any model not trusted with the prompt's data."""

    type: Literal["model"]
    prompt: str
    system: str | None = None
    messages: str | None = None
    tier: Tier | None = None
    model: str | None = None
    output: dict[str, OutputField] | None = None
    write: str | None = None
    cascade: list[str] = []
    min_confidence: float = Field(0.5, ge=0, le=1)
    human: list[str] = []

    @property
    def candidates(self) -> list[str]:
        """The models to try, in order: the cascade, or the one model or tier named."""
        return self.cascade or [self.model or (self.tier.value if self.tier else "")]


class ClassifyNode(_ActivityNode):
    """Route by meaning: the nearest labelled exemplar (embeddings, no generation) picks the
    class written to ``write``. When the margin between the two best classes is below
    ``min_margin`` the ``cascade`` (models, then ``human``) decides instead."""

    type: Literal["classify"]
    input: str
    write: str
    margin: str | None = Field(
        None, description="a state field that receives the margin, so routes can act on how sure the classifier was"
    )
    classes: dict[str, list[str]] = Field(min_length=2)
    min_margin: float = Field(0.0, ge=0)
    cascade: list[str] = []
    human: list[str] = []


class ToolNode(_ActivityNode):
    """Call a tool adapter. ``args`` and ``output`` values are expressions: over the state,
    and over the state plus ``result`` (the tool's output) respectively. When the tool
    refuses (invalid arguments, a business rule), the run goes to ``on_error`` with the
    message in the state field ``error`` — or fails, if no ``on_error`` is declared."""

    type: Literal["tool"]
    tool: str
    args: dict[str, str] = {}
    output: dict[str, str] = {}
    on_error: str | None = None
    error: str | None = None


class RouteNode(_Node):
    """Choose the next node from conditions over the state; does nothing else."""

    type: Literal["route"]


class ApprovalNode(_Node):
    """Park the run until someone with one of ``approvers`` decides; ``next`` follows approval.
    ``output`` fields are what the approver fills in (a reply, a corrected value): validated
    like a model's output and written to the state fields of the same names."""

    type: Literal["approval"]
    ask: str
    approvers: list[str] = Field(min_length=1)
    output: dict[str, OutputField] | None = None
    timeout: Duration = timedelta(hours=24)
    escalate_to: list[str] = []
    default: Literal["approve", "reject"] = "reject"
    on_reject: str | None = None
    on_changes: str | None = Field(None, description="where a request for changes goes (default: on_reject)")


class AgentBounds(_Spec):
    """When an agent must stop: turns taken, and the tokens and cost of its model calls."""

    max_turns: int = Field(6, ge=1, description="model turns before the run fails with StepLimitExceeded")
    max_tokens: int | None = Field(None, ge=1, description="tokens (input + output) before BudgetExceeded")
    max_cost: float | None = Field(None, ge=0, description="cost before BudgetExceeded")


class AgentNode(_ActivityNode):
    """A model that chooses: each turn it asks for tool calls from its ``tools`` (a subset of the
    graph's grant) or gives its final answer (``output`` fields, else text to ``write``). Every
    call the model asks for passes the permission gate before it runs, as its own step
    ``node/visit/turn/call``; a refusal or an approver's rejection comes back as the tool's result."""

    type: Literal["agent"]
    instructions: str
    prompt: str
    tools: list[str] = Field(min_length=1)
    output: dict[str, OutputField] | None = None
    write: str | None = None
    tier: Tier | None = None
    model: str | None = None
    cascade: list[str] = Field([], description="models or tiers to try, in order, when a turn's output is invalid")
    bounds: AgentBounds = AgentBounds()

    @property
    def candidates(self) -> list[str]:
        return self.cascade or [self.model or (self.tier.value if self.tier else "")]


class SubgraphNode(_Node):
    """Run one of the graph's ``graphs`` as a child run: the same principal, the parent's labels,
    a grant within the parent's. ``input`` maps child fields to expressions over this state;
    ``output`` maps this state's fields to expressions over it and ``result`` (the child's output)."""

    type: Literal["subgraph"]
    graph: str
    input: dict[str, str] = {}
    output: dict[str, str] = {}


class MapNode(_Node):
    """Run one of the graph's ``graphs`` — or one ``tool`` — once per item of the list ``over``,
    at most ``concurrency`` at a time; ``input`` expressions (a child graph's fields, or the
    tool's arguments) see the state plus ``item`` and ``index`` (from 1). ``write`` receives the
    results in the items' order: each ``{"status", "output"}``; a tool's also ``"error"``, its
    status ``completed`` or ``refused`` (denied, not approved, or refused by the tool), so one
    refused item does not stop the others. Each item is its own step ``node/visit/index`` —
    a child run's ID, or a tool call's idempotency key — that the permission gate decides."""

    type: Literal["map"]
    over: str
    graph: str | None = Field(None, description="the graph (under 'graphs') each item runs; or give 'tool'")
    tool: str | None = Field(None, description="the tool each item calls; or give 'graph'")
    input: dict[str, str] = {}
    write: str
    concurrency: int = Field(4, ge=1, le=100)
    timeout: Duration = Field(timedelta(seconds=60), description="each tool call's timeout (tool form)")
    retry: RetrySpec = Field(RetrySpec(), description="how each tool call is retried (tool form)")

    @model_validator(mode="after")
    def _graph_or_tool(self) -> MapNode:
        if (self.graph is None) == (self.tool is None):
            raise ValueError("a map runs either a 'graph' or a 'tool' per item: give exactly one")
        return self

    def item_tool(self) -> ToolNode:
        """The tool step each item is, for the engines: this node's tool, timeout and retries."""
        assert self.tool is not None
        return ToolNode(type="tool", tool=self.tool, timeout=self.timeout, retry=self.retry)


class EndNode(_Spec):
    """Finish the run; ``output`` names the state fields returned (default: all)."""

    type: Literal["end"]
    description: str = ""
    output: list[str] | None = None


Node = Annotated[
    ModelNode | ClassifyNode | ToolNode | RouteNode | ApprovalNode | AgentNode | SubgraphNode | MapNode | EndNode,
    Field(discriminator="type"),
]
ActivityNode = ModelNode | ClassifyNode | ToolNode | AgentNode
FlowNode = ModelNode | ClassifyNode | ToolNode | RouteNode | ApprovalNode | AgentNode | SubgraphNode | MapNode


class Budget(_Spec):
    """Limits on a run's model use; when passed the run stops, or asks ``approvers`` to go on."""

    max_cost: float | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=1)
    on_exceeded: Literal["stop", "escalate"] = "stop"
    approvers: list[str] = []


class GraphSpec(_Spec):
    """A whole agent graph: typed state, nodes, edges and the bound on its steps."""

    schema_: str | None = Field(None, alias="$schema")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    version: str = "1"
    state: dict[str, StateField]
    start: str
    nodes: dict[str, Node]
    max_steps: int | None = Field(None, ge=1)
    budget: Budget | None = None
    grant: list[str] | None = Field(
        None, description="the actions this agent may ever use; with a permission gate, anything else is denied"
    )
    graphs: dict[str, GraphSpec] = Field(
        {}, description="the graphs its subgraph and map nodes run; each one's grant within this one's"
    )

    def called_tools(self) -> list[str]:
        """The tools this graph's own nodes may call (its child graphs name their own)."""
        names: set[str] = set()
        for node in self.nodes.values():
            if isinstance(node, ToolNode | MapNode) and node.tool is not None:
                names.add(node.tool)
            elif isinstance(node, AgentNode):
                names.update(node.tools)
        return sorted(names)
