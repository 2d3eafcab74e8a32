"""An agent node's loop: the model chooses tools turn by turn, every call through the executor.

Deterministic like the rest of :mod:`agents.plan`, so it runs inside a Temporal workflow: each
turn is a model step (``node/visit/turn``), each call the model asks for a tool step
(``node/visit/turn/call``, its idempotency key) that the permission gate decides before it
runs. What comes back — the output, a refusal, an approver's rejection and reason — is the
tool's result in the conversation, so the model can recover. The labels of the results join
the conversation's, so each later turn's model must be allowed to see them (the model step
masks or skips, and the cascade moves on). The bounds end the run with a named reason.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.prompts import PromptTemplate

from chamberlain.agents._cascade import Question, ask
from chamberlain.agents._exceptions import BudgetExceeded, StepLimitExceeded
from chamberlain.agents._label_flow import declassified, in_messages, labelled_values
from chamberlain.agents._labels import DataLabels
from chamberlain.agents._outcomes import StepOutcome
from chamberlain.agents._spec import AgentNode
from chamberlain.agents._state import State, prompt_values
from chamberlain.agents._steps import RequestedCall, StepContext, StepExecutor, TokenUsage, ToolCall, ToolReply
from chamberlain.agents._tool_calling import FINAL_ANSWER

if TYPE_CHECKING:
    from chamberlain.agents._plan import GraphPlan


def opening(node: AgentNode, state: State) -> list[BaseMessage]:
    """The conversation's first turn: the instructions, how to choose, and the task."""
    values = prompt_values(state)
    system = PromptTemplate.from_template(node.instructions).format(**values)
    how = f"Use the tools ({', '.join(node.tools)}) as you need them; when you are done, call {FINAL_ANSWER}."
    task = PromptTemplate.from_template(node.prompt).format(**values)
    return [SystemMessage(f"{system}\n\n{how}"), HumanMessage(task)]


async def run_agent(
    plan: GraphPlan,
    name: str,
    node: AgentNode,
    state: State,
    executor: StepExecutor,
    ctx: StepContext,
    labels: DataLabels,
) -> StepOutcome:
    conversation = opening(node, state)
    known, read = labels, plan.labels_read(name, labels)
    usage, cost, routing = TokenUsage(), 0.0, list[str]()
    for turn in range(1, node.bounds.max_turns + 1):
        seen, sensitive = in_messages(known, conversation, read)
        question = Question(conversation, node.output, seen, sensitive)
        answer = await ask(
            name,
            node,
            question,
            executor,
            ctx.part(turn),
            candidates=node.candidates,
            min_confidence=0.5,
            tools=node.tools,
        )
        usage = TokenUsage(
            input_tokens=usage.input_tokens + answer.usage.input_tokens,
            output_tokens=usage.output_tokens + answer.usage.output_tokens,
        )
        cost += answer.cost
        routing += [f"turn {turn}: {line}" for line in answer.routing]
        _check_bounds(name, node, usage, cost)
        if not answer.calls:
            updates = _final(node, answer.values)
            derived = {f: [] if declassified(node.output, f) else seen for f in updates}
            field_labels, values = plan.labelled(updates, derived)
            for label, found in known.values.items():
                values.setdefault(label, []).extend(found)
            return StepOutcome(
                node=name,
                updates=updates,
                next=plan.route(name, plan.merge(state, updates)),
                model=answer.model,
                usage=usage,
                cost=cost,
                routing=routing,
                labels=field_labels,
                sensitive=values,
            )
        ran: list[RequestedCall] = []
        results: list[BaseMessage] = []
        for i, call in enumerate(answer.calls, start=1):
            args_text = json.dumps(call.args, ensure_ascii=False, default=str)
            carried = sorted({*seen, *known.found_in(args_text)})
            step = ToolCall(step=ctx.part(turn, i), tool=call.tool, args=call.args, labels=carried)
            reply = await executor.call_tool(step, node)
            if reply.args is not None:  # an approver edited the call: the edited one is what ran
                call = call.model_copy(update={"args": reply.args})
                routing.append(f"turn {turn} call {i}: {call.tool} arguments edited by the approver")
            ran.append(call)
            results.append(ToolMessage(_result_text(reply), tool_call_id=call.id, name=call.tool))
            done = f"refused: {reply.error.message}" if reply.error else "ok"
            routing.append(f"turn {turn} call {i}: {call.tool} {done}")
            if reply.error is None:
                known = known.updated({}, labelled_values(reply.output, reply.labels))
                read = sorted({*read, *(label for ls in reply.labels.values() for label in ls)})
        calls = [{"id": c.id, "name": c.tool, "args": c.args, "type": "tool_call"} for c in ran]
        conversation += [AIMessage(content="", tool_calls=calls), *results]
    raise StepLimitExceeded(
        f"agent '{name}' reached max_turns={node.bounds.max_turns} without a final answer "
        f"(step {ctx.step_id}); raise bounds.max_turns or narrow its task"
    )


def _final(node: AgentNode, values: dict[str, Any]) -> dict[str, Any]:
    """The final answer as state updates: the output fields, or the answer's text to ``write``."""
    if node.output:
        return {f: values[f] for f in node.output if f in values}
    return {node.write: values.get("answer", "")} if node.write else {}


def _result_text(reply: ToolReply) -> str:
    if reply.error is not None:
        return f"refused ({reply.error.kind}): {reply.error.message}"
    return json.dumps(reply.output, ensure_ascii=False, default=str)


def _check_bounds(name: str, node: AgentNode, usage: TokenUsage, cost: float) -> None:
    bounds, spent = node.bounds, usage.input_tokens + usage.output_tokens
    if bounds.max_tokens is not None and spent > bounds.max_tokens:
        raise BudgetExceeded(f"agent '{name}' used {spent} tokens > bounds.max_tokens={bounds.max_tokens}")
    if bounds.max_cost is not None and cost > bounds.max_cost:
        raise BudgetExceeded(f"agent '{name}' cost {cost:.4f} > bounds.max_cost={bounds.max_cost}")
