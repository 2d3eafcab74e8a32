"""The business tools: CRM, ERP and return processing as adapters over any backend.

The URL in configuration chooses the backend — ``sqlite:///…`` or ``postgresql+psycopg://…``
opens the embedded system, ``http(s)://…`` talks to a REST service with the same contract
(the embedded one, or an enterprise's facade over Salesforce, SAP, Odoo or Kingdee).

    adapter               action                   effect        output labels
    crm.customer.get      crm.customer.read        read          name, email, phone, address: pii
    crm.ticket.open       crm.ticket.create        write         —        (undo: crm.ticket.close)
    erp.order.get         erp.order.read           read          total, paid, refunded: financial
    erp.refund.create     erp.refund.create        irreversible  amount: financial
    returns.evaluate      returns.evaluate         read          refund_amount: financial
    returns.authorize     returns.rma.create       write         refund_amount: financial
    returns.label         returns.label.create     write         —
    returns.refund        erp.refund.create        irreversible  amount: financial
    returns.receive       returns.rma.receive      write         —
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from chamberlain.tools.adapter import Effect, Resource, ToolAdapter, ToolContext, tool
from chamberlain.tools.crm.contract import CrmBackend, CustomerView, TicketRequest, TicketView
from chamberlain.tools.erp.contract import ErpBackend, OrderView, RefundRequest, RefundView, RmaRequest, RmaView
from chamberlain.tools.exceptions import ToolRejected
from chamberlain.tools.registry import ToolRegistry
from chamberlain.tools.returns.label import render_label
from chamberlain.tools.returns.policy import ReturnDecision, ReturnPolicy, ReturnRequest, evaluate

PII = ("pii",)
FINANCIAL = ("financial",)


def erp_backend(url: str) -> ErpBackend:
    """The ERP at ``url``: embedded for a database URL, HTTP for a web URL."""
    if url.startswith(("http://", "https://")):
        from chamberlain.tools.erp.client import HttpErp

        return HttpErp(url)
    from chamberlain.tools.erp.embedded import EmbeddedErp

    return EmbeddedErp(url)


def crm_backend(url: str) -> CrmBackend:
    if url.startswith(("http://", "https://")):
        from chamberlain.tools.crm.client import HttpCrm

        return HttpCrm(url)
    from chamberlain.tools.crm.embedded import EmbeddedCrm

    return EmbeddedCrm(url)


class CustomerQuery(BaseModel):
    customer_id: str


class OrderQuery(BaseModel):
    order_id: str


class RmaQuery(BaseModel):
    rma: str


class Label(BaseModel):
    rma: str
    path: str
    sha256: str


def business_tools(
    erp: ErpBackend,
    crm: CrmBackend,
    *,
    policy: ReturnPolicy | None = None,
    labels_dir: Path = Path(".chamberlain/labels"),
    today: Any = None,
) -> ToolRegistry:
    """Every business adapter over ``erp`` and ``crm``; ``today`` fixes the date for tests."""
    rules = policy or ReturnPolicy.load()

    def now() -> datetime | None:
        return today() if callable(today) else today

    contact = {field: PII for field in ("name", "email", "phone", "address")}

    @tool(
        "crm.customer.get",
        action="crm.customer.read",
        labels=contact,
        resource=lambda a: Resource("Customer", a.customer_id),
    )
    async def get_customer(args: CustomerQuery, ctx: ToolContext) -> CustomerView:
        """Look a customer up: name, contact details, language and tier."""
        return await crm.get_customer(args.customer_id)

    @tool("crm.ticket.open", effect=Effect.WRITE, action="crm.ticket.create", compensation="crm.ticket.close",
          resource=lambda a: Resource("Customer", a.customer_id))  # fmt: skip
    async def open_ticket(args: TicketRequest, ctx: ToolContext) -> TicketView:
        """Open a support ticket for a customer, with an optional first note."""
        return await crm.open_ticket(args, ctx.idempotency_key)

    @tool("erp.order.get", action="erp.order.read", labels={f: FINANCIAL for f in ("total", "paid", "refunded")},
          resource=lambda a: Resource("Order", a.order_id))  # fmt: skip
    async def get_order(args: OrderQuery, ctx: ToolContext) -> OrderView:
        """Look an order up with its lines, payment and refunds."""
        return await erp.get_order(args.order_id)

    @tool("erp.refund.create", effect=Effect.IRREVERSIBLE, action="erp.refund.create", labels={"amount": FINANCIAL},
          resource=lambda a: Resource("Order", a.order_id, {"amount": a.amount}))  # fmt: skip
    async def refund(args: RefundRequest, ctx: ToolContext) -> RefundView:
        """Refund an amount of an order's payment, once per step."""
        return await erp.refund(args, ctx.idempotency_key)

    @tool("returns.evaluate", action="returns.evaluate", labels={"refund_amount": FINANCIAL},
          resource=lambda a: Resource("Order", a.order_id))  # fmt: skip
    async def evaluate_return(args: ReturnRequest, ctx: ToolContext) -> ReturnDecision:
        """Check a return against the policy: window, promotion, category, condition, quantities."""
        return evaluate(rules, await erp.get_order(args.order_id), args, now())

    @tool("returns.authorize", effect=Effect.WRITE, action="returns.rma.create", compensation="returns.cancel",
          labels={"refund_amount": FINANCIAL}, resource=lambda a: Resource("Order", a.order_id))  # fmt: skip
    async def authorize(args: ReturnRequest, ctx: ToolContext) -> RmaView:
        """Authorise a return the policy allows; refused with every reason otherwise."""
        if done := await erp.find_return(ctx.idempotency_key):  # a retry of this very step
            return done
        decision = evaluate(rules, await erp.get_order(args.order_id), args, now())
        if not decision.eligible:
            raise ToolRejected("return not allowed: " + "; ".join(decision.reasons))
        request = RmaRequest(order_id=args.order_id, lines=args.lines, reason=args.reason, condition=args.condition,
                             refund_amount=decision.refund_amount)  # fmt: skip
        return await erp.authorize_return(request, ctx.idempotency_key)

    @tool(
        "returns.label",
        effect=Effect.WRITE,
        action="returns.label.create",
        resource=lambda a: Resource("Return", a.rma),
    )
    async def label(args: RmaQuery, ctx: ToolContext) -> Label:
        """Print the return label (PDF) for an authorised return."""
        rma = await erp.get_return(args.rma)
        order = await erp.get_order(rma.order_id)
        path = labels_dir / f"{rma.rma}.pdf"
        digest = render_label(path, rma=rma.rma, order_id=order.id, sender=order.ship_to, recipient=order.return_to)
        return Label(rma=rma.rma, path=str(path), sha256=digest)

    async def return_refunded(args: RmaQuery) -> Resource:
        """What a return's refund pays, as the ERP has it: the policy decides on that amount."""
        rma = await erp.get_return(args.rma)
        return Resource("Return", rma.rma, {"amount": rma.refund_amount, "currency": rma.currency})

    @tool("returns.refund", effect=Effect.IRREVERSIBLE, action="erp.refund.create", labels={"amount": FINANCIAL},
          resource=return_refunded)  # fmt: skip
    async def refund_return(args: RmaQuery, ctx: ToolContext) -> RefundView:
        """Refund an authorised return's amount to the original payment, once."""
        rma = await erp.get_return(args.rma)
        request = RefundRequest(order_id=rma.order_id, amount=rma.refund_amount, reason=f"return {rma.rma}")
        return await erp.refund(request, ctx.idempotency_key)

    @tool(
        "returns.receive",
        effect=Effect.WRITE,
        action="returns.rma.receive",
        resource=lambda a: Resource("Return", a.rma),
    )
    async def receive(args: RmaQuery, ctx: ToolContext) -> RmaView:
        """Record the returned goods as received and put them back in stock, once."""
        return await erp.receive_return(args.rma, ctx.idempotency_key)

    adapters: list[ToolAdapter[Any, Any]] = [
        get_customer, open_ticket, get_order, refund, evaluate_return, authorize, label, refund_return, receive,
    ]  # fmt: skip
    return ToolRegistry(adapters)
