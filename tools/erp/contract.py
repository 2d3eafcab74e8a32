"""The ERP contract: what the adapters need from an ERP, as typed requests and views.

Both the embedded ERP and the HTTP client implement :class:`ErpBackend`; this is also the
contract an enterprise puts in front of its real ERP (SAP, Odoo, Kingdee…), documented by
the REST service's OpenAPI schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, Field

CENT = 0.005  # amounts closer than half a cent are equal


class LineView(BaseModel):
    line_no: int
    sku: str
    name: str
    category: str
    quantity: int
    unit_price: float
    returned_quantity: int


class StockView(BaseModel):
    """What a warehouse has of a product right now: a read, reserving nothing."""

    sku: str
    name: str
    warehouse: str
    on_hand: int


class OrderView(BaseModel):
    id: str
    customer_id: str
    status: str
    placed_at: datetime
    delivered_at: datetime | None
    currency: str
    total: float
    paid: float
    refunded: float
    promotion: str | None
    warehouse: str
    ship_to: str
    return_to: str = Field(description="the address of the warehouse that takes returns")
    lines: list[LineView]


class RefundRequest(BaseModel):
    """``expected_refunded`` pins the refund to the order's refunded amount it was decided on
    (optimistic concurrency, like HTTP's If-Match): the ERP refuses it if that changed meanwhile."""

    order_id: str
    amount: float = Field(gt=0)
    reason: str = ""
    expected_refunded: float | None = Field(
        None, ge=0, description="the order's refunded amount this refund was decided on; refused if it changed"
    )


class ReturnRefundRequest(BaseModel):
    expected_refunded: float | None = Field(
        None, ge=0, description="the order's refunded amount this refund was decided on; refused if it changed"
    )


class RefundView(BaseModel):
    refund_id: str
    order_id: str
    amount: float
    currency: str
    created_at: datetime


class ReturnLine(BaseModel):
    line_no: int
    quantity: int = Field(gt=0)


class OrderStatusView(BaseModel):
    """Where an order is: its status and shipment, and what of each line is still returnable."""

    order_id: str
    status: str = Field(description="placed, shipped, delivered or cancelled")
    placed_at: datetime
    delivered_at: datetime | None
    carrier: str | None
    tracking: str | None
    shipped_at: datetime | None
    open_lines: list[ReturnLine] = Field(description="each line's quantity not yet returned; returned lines left out")


class RmaRequest(BaseModel):
    order_id: str
    lines: list[ReturnLine] = Field(min_length=1)
    reason: str
    condition: str
    refund_amount: float = Field(ge=0)


class RmaView(BaseModel):
    rma: str
    order_id: str
    lines: list[ReturnLine]
    reason: str
    condition: str
    refund_amount: float
    currency: str
    status: str
    created_at: datetime


class ErpBackend(Protocol):
    """Writes take an idempotency key: the same key answers with the first result."""

    async def get_order(self, order_id: str) -> OrderView: ...

    async def get_stock(self, sku: str, warehouse: str) -> StockView: ...

    async def refund(self, request: RefundRequest, idempotency_key: str) -> RefundView: ...

    async def refund_return(self, rma: str, expected_refunded: float | None, idempotency_key: str) -> RefundView:
        """Refund a return's amount to its order's payment — once per return, whichever step asks:
        a return refunded already is refused (its own step's retry answers with the first result)."""
        ...

    async def authorize_return(self, request: RmaRequest, idempotency_key: str) -> RmaView: ...

    async def get_return(self, rma: str) -> RmaView: ...

    async def order_status(self, order_id: str) -> OrderStatusView: ...

    async def cancel_order(self, order_id: str, idempotency_key: str) -> OrderStatusView:
        """Cancel an order that has not shipped; an order already cancelled answers as it is."""
        ...

    async def find_return(self, idempotency_key: str) -> RmaView | None:
        """The return authorised with this key, if any: lets a retried step find its own."""
        ...

    async def receive_return(self, rma: str, idempotency_key: str) -> RmaView: ...
