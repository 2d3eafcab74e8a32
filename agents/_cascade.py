"""A model step's cascade: each candidate model in turn, then a person, until an answer is
valid and confident enough. Every attempt is noted in ``routing``; usage and cost add up."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage

from chamberlain.agents._exceptions import ModelOutputInvalid, ModelUnavailable
from chamberlain.agents._models import output_model, parse_output
from chamberlain.agents._outcomes import StepOutcome
from chamberlain.agents._spec import AgentNode, ApprovalNode, ClassifyNode, ModelNode, OutputField, model_or_tier
from chamberlain.agents._steps import (
    ApprovalRequest,
    ModelCall,
    ModelReply,
    RequestedCall,
    StepContext,
    StepExecutor,
    TokenUsage,
)


@dataclass(frozen=True)
class Question:
    """What the cascade asks: the messages, the output wanted, the labels of the data in the
    messages and the labelled values they contain (what masking would hide)."""

    messages: list[BaseMessage]
    output: dict[str, OutputField] | None
    labels: list[str]
    sensitive: dict[str, list[str]]


@dataclass
class Answer:
    """What a cascade produced, with every model's usage and every routing decision."""

    node: str
    routing: list[str]
    values: dict[str, Any] = field(default_factory=dict)
    message: AIMessage | None = None
    calls: list[RequestedCall] = field(default_factory=list)
    model: str | None = None
    usage: TokenUsage = field(default_factory=TokenUsage)
    cost: float = 0.0

    def add(self, reply: ModelReply) -> None:
        self.usage = TokenUsage(
            input_tokens=self.usage.input_tokens + reply.usage.input_tokens,
            output_tokens=self.usage.output_tokens + reply.usage.output_tokens,
        )
        self.cost += reply.cost

    def outcome(
        self, updates: dict[str, Any], next: str | None, labels: tuple[dict[str, list[str]], dict[str, list[str]]]
    ) -> StepOutcome:
        """The step's outcome; ``labels``: its fields' labels, and the labelled values in them."""
        return StepOutcome(
            node=self.node,
            updates=updates,
            next=next,
            model=self.model,
            usage=self.usage,
            cost=self.cost,
            routing=self.routing,
            labels=labels[0],
            sensitive=labels[1],
        )


async def ask(
    name: str,
    node: ModelNode | ClassifyNode | AgentNode,
    question: Question,
    executor: StepExecutor,
    ctx: StepContext,
    *,
    candidates: list[str],
    min_confidence: float,
    routing: list[str] | None = None,
    tools: list[str] | None = None,
) -> Answer:
    """Walk ``candidates`` until an answer is valid and confident; ``human`` hands the question
    to someone with one of the node's ``human`` roles. ``routing``: decisions made before;
    ``tools``: what an agent's turn may ask for."""
    answer = Answer(node=name, routing=list(routing or []))
    for attempt, candidate in enumerate(candidates, start=len(answer.routing)):
        if candidate == "human" and not isinstance(node, AgentNode):
            return await _ask_human(name, node.human, question.output, answer, executor, ctx)
        model, tier = model_or_tier(candidate)
        call = ModelCall(
            step=ctx,
            messages=question.messages,
            tier=tier,
            model=model,
            output=question.output,
            labels=question.labels,
            sensitive=question.sensitive,
            attempt=attempt,
            tools=tools or [],
        )
        try:
            reply = await executor.call_model(call, node)
        except ModelUnavailable as exc:  # through its retries: the next model, or a person, answers
            answer.routing.append(f"{candidate}: unavailable ({str(exc)[:120]})")
            continue
        answer.add(reply)
        if reply.skipped:
            answer.routing.append(f"{reply.model}: skipped, {reply.skipped}")
        elif reply.error:
            answer.routing.append(f"{reply.model}: invalid output ({reply.error[:120]})")
        elif reply.confidence < min_confidence:
            answer.routing.append(f"{reply.model}: confidence {reply.confidence} < {min_confidence}")
        else:
            masked = f" ({', '.join(reply.masked)} masked)" if reply.masked else ""
            answer.routing.append(f"{reply.model}: ok" + (" after repair" if reply.repaired else "") + masked)
            answer.values, answer.model = reply.structured or {}, reply.model
            answer.message = reply.message if isinstance(reply.message, AIMessage) else None
            answer.calls = reply.tool_calls
            return answer
    raise ModelOutputInvalid(f"node '{name}': no model gave valid output: {'; '.join(answer.routing)}")


async def _ask_human(
    name: str,
    roles: list[str],
    output: dict[str, OutputField] | None,
    answer: Answer,
    executor: StepExecutor,
    ctx: StepContext,
) -> Answer:
    fields = ", ".join(output or {}) or "an answer"
    node = ApprovalNode(type="approval", ask=f"{name}: the models could not answer; provide {fields}", approvers=roles)
    request = ApprovalRequest(step=ctx, ask=node.ask, approvers=roles)
    decision = await executor.request_approval(request, node)
    values, error = (decision.values or {}), "declined" if decision.outcome == "reject" else None
    if output and error is None:
        parsed, error = parse_output(output_model(output), json.dumps(values))
        values = parsed or {}
    if error:
        raise ModelOutputInvalid(f"node '{name}': {decision.by} {error}: {'; '.join(answer.routing)}")
    answer.routing.append(f"human {decision.by}: answered")
    answer.values, answer.model = values, f"human:{decision.by}"
    return answer
