"""A workflow that calls the tool activity directly, as a compromised or buggy workflow could:
with no ticket, or with a ticket made for another call, key or resource."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from chamberlain.agents._steps import ToolCall, ToolReply
    from chamberlain.workflows._gate import Ticket, current_ticket


class Forgery(BaseModel):
    call: ToolCall
    ticket: Ticket | None = None


@workflow.defn(name="test.forger")
class Forger:
    @workflow.run
    async def run(self, forgery: Forgery) -> str:
        current_ticket.set(forgery.ticket)  # as GatedExecutor does: the ticket interceptor sends it along
        try:
            reply = await workflow.execute_activity(
                "chamberlain.tool_step",
                forgery.call,
                result_type=ToolReply,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except ActivityError as exc:
            cause = exc.cause
            return f"{cause.type}: {cause.message}" if isinstance(cause, ApplicationError) else str(cause)
        return f"ran: {sorted(reply.output)}"
