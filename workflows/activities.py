"""The model and tool activities: where every effect of a graph run happens.

Errors are translated here into Temporal's retry vocabulary: what the graph's author or
the backend said "no" to is non-retryable; what may work later is retried by Temporal
under the node's retry policy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from agents.exceptions import ModelOutputInvalid
from agents.models import ModelRegistry, call_model
from agents.steps import ModelCall, ModelReply, ToolCall, ToolReply
from tools.adapter import ToolContext
from tools.exceptions import ToolInputInvalid, ToolRejected, UnknownTool
from tools.registry import ToolRegistry


class GraphActivities:
    """Activities bound to the models and tools this worker offers."""

    def __init__(self, models: ModelRegistry, tools: ToolRegistry) -> None:
        self.models = models
        self.tools = tools

    @activity.defn(name="chamberlain.model_step")
    async def model_step(self, call: ModelCall) -> ModelReply:
        try:
            return await call_model(self.models, call)
        except ModelOutputInvalid as exc:
            raise ApplicationError(str(exc), type="ModelOutputInvalid", non_retryable=True) from exc
        except LookupError as exc:
            raise ApplicationError(str(exc), type="ModelNotFound", non_retryable=True) from exc

    @activity.defn(name="chamberlain.tool_step")
    async def tool_step(self, call: ToolCall) -> ToolReply:
        context = ToolContext(
            step_id=call.step.step_id, idempotency_key=call.idempotency_key, attempt=activity.info().attempt
        )
        try:
            return ToolReply(output=await self.tools.invoke(call.tool, call.args, context))
        except (UnknownTool, ToolInputInvalid, ToolRejected) as exc:
            raise ApplicationError(str(exc), type=type(exc).__name__, non_retryable=True) from exc

    def all(self) -> list[Callable[..., Any]]:
        return [self.model_step, self.tool_step]
