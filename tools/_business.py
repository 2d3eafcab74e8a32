"""The business tools: CRM, ERP and return processing as adapters over any backend.

The URL in configuration chooses the backend — ``sqlite:///…`` or ``postgresql+psycopg://…``
opens the embedded system, ``http(s)://…`` talks to a REST service with the same contract
(the embedded one, or an enterprise's facade over Salesforce, SAP, Odoo or Kingdee).

    adapter               action                   effect        output labels
    crm.customer.get      crm.customer.read        read          name, email, phone, address: pii
    crm.ticket.open       crm.ticket.create        write         —        (undo: crm.ticket.close)
    erp.order.get         erp.order.read           read          total, paid, refunded: financial
    erp.stock.get         erp.stock.read           read          —
    erp.order.status      erp.order.read           read          —
    erp.order.cancel      erp.order.cancel         write         —
    erp.refund.create     erp.refund.create        irreversible  amount: financial
    returns.evaluate      returns.evaluate         read          refund_amount, refunded: financial
    returns.authorize     returns.rma.create       write         refund_amount: financial
    returns.label         returns.label.create     write         —
    returns.refund        erp.refund.create        irreversible  amount: financial
    returns.receive       returns.rma.receive      write         —

Every resource names its ``owner`` (the customer ID, read from the system of record, never
from arguments) so policy can keep a customer to its own records; money resources also carry
the order's ``refunded`` and ``total`` (limits are cumulative) and ``pinned``: whether the
refund is pinned to the refunded amount this decision sees (see ``RefundRequest``).
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from chamberlain.tools._adapter import Effect, Resource, ToolAdapter, ToolContext, tool
from chamberlain.tools._exceptions import ToolRejected
from chamberlain.tools._registry import ToolRegistry
from chamberlain.tools.crm.contract import CrmBackend, CustomerView, TicketRequest, TicketView
from chamberlain.tools.erp.contract import (
    CENT,
    ErpBackend,
    OrderStatusView,
    OrderView,
    RefundRequest,
    RefundView,
    RmaRequest,
    RmaView,
    StockView,
)
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


class StockQuery(BaseModel):
    sku: str = Field(min_length=1)
    warehouse: str = Field(min_length=1)


class RmaQuery(BaseModel):
    rma: str


class ReturnRefund(BaseModel):
    rma: str
    expected_refunded: float | None = Field(
        None, ge=0, description="the order's refunded amount this refund was decided on; refused if it changed"
    )


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

    async def order_of(order_id: str) -> OrderView | None:
        try:
            return await erp.get_order(order_id)
        except ToolRejected:  # no such order: the resource names no owner, and the tool says why
            return None

    async def order_resource(order_id: str, extra: dict[str, Any] | None = None) -> Resource:
        """An order as policy sees it: its owner and money, as the ERP has them."""
        order = await order_of(order_id)
        if order is None:
            return Resource("Order", order_id, extra or {})
        return Resource("Order", order_id, {**_ownership(order), **(extra or {})})

    async def return_resource(rma: str, extra: dict[str, Any] | None = None) -> Resource:
        """A return as policy sees it: the owner and money of its order, and what its refund pays."""
        try:
            found = await erp.get_return(rma)
        except ToolRejected:
            return Resource("Return", rma, extra or {})
        order = await order_of(found.order_id)
        money = {"amount": found.refund_amount, "currency": found.currency}
        return Resource("Return", rma, {**(_ownership(order) if order else {}), **money, **(extra or {})})

    async def customer_resource(args: TicketRequest | CustomerQuery) -> Resource:
        """A customer owns its own record; a ticket about an order of someone else has no owner."""
        owner = args.customer_id
        if (order_id := getattr(args, "order_id", None)) is not None:
            order = await order_of(order_id)
            if order is None or order.customer_id != owner:
                return Resource("Customer", owner)
        return Resource("Customer", owner, {"owner": owner})

    @tool(
        "crm.customer.get",
        action="crm.customer.read",
        labels=contact,
        resource=customer_resource,
    )
    async def get_customer(args: CustomerQuery, ctx: ToolContext) -> CustomerView:
        """Look a customer up: name, contact details, language and tier."""
        return await crm.get_customer(args.customer_id)

    @tool(
        "crm.ticket.open",
        effect=Effect.WRITE,
        action="crm.ticket.create",
        compensation="crm.ticket.close",
        resource=customer_resource,
    )
    async def open_ticket(args: TicketRequest, ctx: ToolContext) -> TicketView:
        """Open a support ticket for a customer, with an optional first note."""
        return await crm.open_ticket(args, ctx.idempotency_key)

    @tool(
        "erp.order.get",
        action="erp.order.read",
        labels={f: FINANCIAL for f in ("total", "paid", "refunded")},
        resource=lambda a: order_resource(a.order_id),
    )
    async def get_order(args: OrderQuery, ctx: ToolContext) -> OrderView:
        """Look an order up with its lines, payment and refunds."""
        return await erp.get_order(args.order_id)

    @tool("erp.order.status", action="erp.order.read", resource=lambda a: order_resource(a.order_id))
    async def order_status(args: OrderQuery, ctx: ToolContext) -> OrderStatusView:
        """Where an order is: status, carrier and tracking, and the quantities still returnable."""
        return await erp.order_status(args.order_id)

    @tool(
        "erp.order.cancel",
        effect=Effect.WRITE,
        action="erp.order.cancel",
        resource=lambda a: order_resource(a.order_id),
    )
    async def cancel_order(args: OrderQuery, ctx: ToolContext) -> OrderStatusView:
        """Cancel an order that has not shipped yet; refused, with the reason, once it has."""
        return await erp.cancel_order(args.order_id, ctx.idempotency_key)

    @tool(
        "erp.stock.get",
        action="erp.stock.read",
        resource=lambda a: Resource("Stock", f"{a.warehouse}/{a.sku}", {"sku": a.sku, "warehouse": a.warehouse}),
    )
    async def get_stock(args: StockQuery, ctx: ToolContext) -> StockView:
        """How many of a product (by SKU) a warehouse has on hand; reserves nothing."""
        return await erp.get_stock(args.sku, args.warehouse)

    @tool(
        "erp.refund.create",
        effect=Effect.IRREVERSIBLE,
        action="erp.refund.create",
        labels={"amount": FINANCIAL},
        resource=lambda a: pinned(order_resource(a.order_id, {"amount": a.amount}), a.expected_refunded),
    )
    async def refund(args: RefundRequest, ctx: ToolContext) -> RefundView:
        """Refund an amount of an order's payment, once per step."""
        return await erp.refund(args, ctx.idempotency_key)

    @tool(
        "returns.evaluate",
        action="returns.evaluate",
        labels={"refund_amount": FINANCIAL, "refunded": FINANCIAL},
        resource=lambda a: order_resource(a.order_id),
    )
    async def evaluate_return(args: ReturnRequest, ctx: ToolContext) -> ReturnDecision:
        """Check a return against the policy: window, promotion, category, condition, quantities."""
        return evaluate(rules, await erp.get_order(args.order_id), args, now())

    @tool(
        "returns.authorize",
        effect=Effect.WRITE,
        action="returns.rma.create",
        compensation="returns.cancel",
        labels={"refund_amount": FINANCIAL},
        resource=lambda a: order_resource(a.order_id),
    )
    async def authorize(args: ReturnRequest, ctx: ToolContext) -> RmaView:
        """Authorise a return the policy allows; refused with every reason otherwise."""
        if done := await erp.find_return(ctx.idempotency_key):  # a retry of this very step
            return done
        decision = evaluate(rules, await erp.get_order(args.order_id), args, now())
        if not decision.eligible:
            raise ToolRejected("return not allowed: " + "; ".join(decision.reasons))
        request = RmaRequest(
            order_id=args.order_id,
            lines=args.lines,
            reason=args.reason,
            condition=args.condition,
            refund_amount=decision.refund_amount,
        )
        return await erp.authorize_return(request, ctx.idempotency_key)

    @tool(
        "returns.label",
        effect=Effect.WRITE,
        action="returns.label.create",
        resource=lambda a: return_resource(a.rma),
    )
    async def label(args: RmaQuery, ctx: ToolContext) -> Label:
        """Print the return label (PDF) for an authorised return."""
        rma = await erp.get_return(args.rma)
        order = await erp.get_order(rma.order_id)
        path = labels_dir / f"{rma.rma}.pdf"
        digest = render_label(path, rma=rma.rma, order_id=order.id, sender=order.ship_to, recipient=order.return_to)
        return Label(rma=rma.rma, path=str(path), sha256=digest)

    @tool(
        "returns.refund",
        effect=Effect.IRREVERSIBLE,
        action="erp.refund.create",
        labels={"amount": FINANCIAL},
        resource=lambda a: pinned(return_resource(a.rma), a.expected_refunded),
    )
    async def refund_return(args: ReturnRefund, ctx: ToolContext) -> RefundView:
        """Refund an authorised return's amount (the ERP's, not an argument) to the original
        payment, once per return: a return refunded already, by any run, is refused."""
        return await erp.refund_return(args.rma, args.expected_refunded, ctx.idempotency_key)

    @tool(
        "returns.receive",
        effect=Effect.WRITE,
        action="returns.rma.receive",
        resource=lambda a: return_resource(a.rma),
    )
    async def receive(args: RmaQuery, ctx: ToolContext) -> RmaView:
        """Record the returned goods as received and put them back in stock, once."""
        return await erp.receive_return(args.rma, ctx.idempotency_key)

    adapters: list[ToolAdapter[Any, Any]] = [
        get_customer,
        open_ticket,
        get_order,
        order_status,
        cancel_order,
        get_stock,
        refund,
        evaluate_return,
        authorize,
        label,
        refund_return,
        receive,
    ]
    return ToolRegistry(adapters)


def _ownership(order: OrderView) -> dict[str, Any]:
    return {"owner": order.customer_id, "currency": order.currency, "total": order.total, "refunded": order.refunded}


async def pinned(resource: Awaitable[Resource], expected_refunded: float | None) -> Resource:
    """A refund's resource, ``pinned`` if the refund is pinned to the refunded amount this very
    decision sees. A pin to any other amount — ahead of a refund not made yet, say — would let
    two refunds decided at once each pass the limit alone and both land."""
    found = await resource
    refunded = found.attributes.get("refunded")
    held = expected_refunded is not None and refunded is not None and abs(refunded - expected_refunded) < CENT
    return Resource(found.type, found.id, {**found.attributes, "pinned": held})
