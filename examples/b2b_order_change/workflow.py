"""The business's own workflow: a B2B customer asks to change an order line's quantity.

1. The drafting graph (a child run, :func:`run_graph`) reads the order — the customer's own only —
   and the stock, and drafts the answer; every step passes the permission gate.
2. The customer is told; without enough stock the run ends there.
3. It waits for the customer's ``confirm`` signal (by a signed webhook in production, see
   ``webhook.py``) at most ``answer_within``; only the first answer of the customer counts.
4. Confirmed: the commit graph makes the change in the ERP, once (its idempotency key derives
   from this workflow's ID). Declined or no answer: cancelled, nothing written.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, Field
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from chamberlain.examples.b2b_order_change.activities import Notice, notify_customer
    from chamberlain.examples.b2b_order_change.graphs import COMMIT, DRAFT
    from chamberlain.workflows import Principal, RunResult, run_graph

ID_PREFIX = "b2b-order-change:"


def change_workflow_id(request_id: str) -> str:
    """The run of a change request: one per request ID, so a repeated request joins its run."""
    return f"{ID_PREFIX}{request_id}"


class OrderChange(BaseModel):
    customer_id: str = Field(min_length=1)
    order_id: str = Field(min_length=1)
    line_no: int = Field(1, ge=1)
    quantity: int = Field(ge=1, description="the line's new quantity")
    answer_within: timedelta = timedelta(days=2)


class Confirmation(BaseModel):
    """The customer's answer to the draft."""

    customer_id: str
    accepted: bool
    event_id: str = ""


class ChangeOutcome(BaseModel):
    status: Literal["committed", "cancelled", "unavailable", "refused"]
    message: str = Field(description="what the customer was told")
    reason: str = ""
    change_id: str | None = None
    available: int | None = None
    ignored: list[str] = Field([], description="answers not from the order's customer, by event ID")


@workflow.defn(name="b2b.order_change")
class OrderChangeWorkflow:
    @workflow.init
    def __init__(self, change: OrderChange) -> None:
        self._customer = change.customer_id
        self._answer: Confirmation | None = None
        self._ignored: list[str] = []
        self._draft: str | None = None

    @workflow.signal
    def confirm(self, answer: Confirmation) -> None:
        """The first answer of the order's customer counts; a repeat or anyone else's changes nothing."""
        if answer.customer_id != self._customer:
            self._ignored.append(answer.event_id or "?")
        elif self._answer is None:
            self._answer = answer

    @workflow.query
    def draft(self) -> str | None:
        return self._draft

    @workflow.run
    async def run(self, change: OrderChange) -> ChangeOutcome:
        customer = Principal(id=change.customer_id, roles=["customer"], customer=change.customer_id)
        values = {"order_id": change.order_id, "line_no": change.line_no, "quantity": change.quantity}
        drafted = await run_graph(DRAFT, values, principal=customer, id="draft")
        refusal = _refusal(drafted)
        if refusal:
            return await self._end(ChangeOutcome(status="refused", message=refusal, reason=refusal), "refused")
        facts = drafted.output
        self._draft = facts.get("draft") or _plain(facts)
        await self._tell(self._draft, "draft")
        if not facts["enough"]:
            return self._outcome("unavailable", self._draft, "not enough stock", available=facts["available"])
        try:
            await workflow.wait_condition(lambda: self._answer is not None, timeout=change.answer_within)
        except TimeoutError:
            reason = f"no answer within {change.answer_within}"
            return await self._end(self._outcome("cancelled", f"We cancelled the change: {reason}.", reason))
        assert self._answer is not None
        if not self._answer.accepted:
            return await self._end(self._outcome("cancelled", "As you asked, the order stays as it was.", "declined"))
        commit_values = {**values, "current": facts["current"]}
        committed = await run_graph(COMMIT, commit_values, principal=customer, id="commit")
        if committed.end != "done":
            error = str(committed.output.get("error", "the change could not be made"))
            return await self._end(self._outcome("refused", f"We could not make the change: {error}.", error))
        text = f"Done: line {change.line_no} of order {change.order_id} is now {change.quantity} units."
        return await self._end(self._outcome("committed", text, change_id=committed.output["change_id"]))

    def _outcome(self, status: str, message: str, reason: str = "", **facts: object) -> ChangeOutcome:
        return ChangeOutcome.model_validate(
            {"status": status, "message": message, "reason": reason, "ignored": self._ignored, **facts}
        )

    async def _end(self, outcome: ChangeOutcome, what: str = "outcome") -> ChangeOutcome:
        await self._tell(outcome.message, what)
        return outcome

    async def _tell(self, text: str, what: str) -> None:
        notice = Notice(key=f"{workflow.info().workflow_id}/{what}", customer_id=self._customer, text=text)
        await workflow.execute_activity(notify_customer, notice, start_to_close_timeout=timedelta(seconds=30))


def _refusal(drafted: RunResult) -> str:
    """Why the draft ended without an answer to give, or ``""``."""
    out = drafted.output
    if drafted.end == "refused":
        return f"Order {out.get('order_id')} cannot be changed: {out.get('error')}"
    if drafted.end == "no_line":
        return f"Order {out['order_id']} has no line {out['line_no']} (it has {out['lines']})."
    if drafted.end == "closed":
        return f"Order {out['order_id']} is {out['status']}: only an order not yet shipped can change."
    return ""


def _plain(facts: dict[str, object]) -> str:
    """The answer in plain words, when the model's draft did not keep the numbers."""
    line = f"Order {facts['order_id']}, line {facts['line_no']} ({facts['sku']})"
    head = f"{line}: {facts['current']} → {facts['quantity']}"
    if facts["enough"]:
        return f"{head} units — we have the stock. Please confirm the change."
    return f"{head} units — only {facts['available']} in stock, so we cannot make this change now."
