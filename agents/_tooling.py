"""How a tool step runs, in either engine: refusals come back as data the graph can act on.

Arguments that fail validation and business rules that say no are returned as a
:class:`~agents.steps.ToolFailure` — nothing was written, and a graph with an ``on_error``
path can let the model correct itself. Everything else (the backend is down) is raised,
for Temporal to retry.
"""

from __future__ import annotations

from chamberlain.agents._steps import ToolCall, ToolFailure, ToolReply
from chamberlain.tools._adapter import ToolContext
from chamberlain.tools._exceptions import ToolInputInvalid, ToolRejected
from chamberlain.tools._registry import ToolRegistry


async def call_tool(tools: ToolRegistry, call: ToolCall, attempt: int = 1) -> ToolReply:
    context = ToolContext(step_id=call.step.step_id, idempotency_key=call.idempotency_key, attempt=attempt)
    try:
        output = await tools.invoke(call.tool, call.args, context)
        labels = {f: list(ls) for f, ls in tools[call.tool].labels.items() if ls}
        return ToolReply(output=output, labels=labels)
    except (ToolInputInvalid, ToolRejected) as exc:
        return ToolReply(error=ToolFailure(kind=type(exc).__name__, message=str(exc)))
