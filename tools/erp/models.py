"""The ERP's tables: products, warehouses and inventory, orders and lines, shipments,
payments, refunds and return authorisations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, UniqueConstraint
from sqlmodel import Field, SQLModel


class Product(SQLModel, table=True):
    __tablename__ = "erp_product"
    sku: str = Field(primary_key=True)
    name: str
    category: str = Field(index=True)
    price: float
    currency: str = "CNY"


class Warehouse(SQLModel, table=True):
    __tablename__ = "erp_warehouse"
    code: str = Field(primary_key=True)
    city: str
    address: str
    currency: str


class Inventory(SQLModel, table=True):
    __tablename__ = "erp_inventory"
    sku: str = Field(primary_key=True, foreign_key="erp_product.sku")
    warehouse: str = Field(primary_key=True, foreign_key="erp_warehouse.code")
    on_hand: int = 0


class Order(SQLModel, table=True):
    __tablename__ = "erp_order"
    id: str = Field(primary_key=True)
    customer_id: str = Field(index=True)
    placed_at: datetime
    delivered_at: datetime | None = None
    status: str = "placed"  # placed, shipped, delivered, cancelled
    currency: str = "CNY"
    total: float
    promotion: str | None = Field(default=None, index=True)
    warehouse: str = Field(foreign_key="erp_warehouse.code")
    ship_to: str = ""


class OrderLine(SQLModel, table=True):
    __tablename__ = "erp_order_line"
    order_id: str = Field(primary_key=True, foreign_key="erp_order.id")
    line_no: int = Field(primary_key=True)
    sku: str = Field(foreign_key="erp_product.sku")
    quantity: int
    unit_price: float
    returned_quantity: int = 0


class Shipment(SQLModel, table=True):
    __tablename__ = "erp_shipment"
    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(index=True, foreign_key="erp_order.id")
    carrier: str
    tracking: str
    shipped_at: datetime


class Payment(SQLModel, table=True):
    """What was paid, and how much of it is refunded; the CHECK is the last line of defence
    behind the conditional update that keeps concurrent refunds from over-refunding."""

    __tablename__ = "erp_payment"
    __table_args__ = (CheckConstraint("refunded <= amount + 0.000001", name="refund_within_payment"),)
    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(index=True, foreign_key="erp_order.id")
    method: str
    amount: float
    refunded: float = 0.0
    currency: str = "CNY"


class Refund(SQLModel, table=True):
    __tablename__ = "erp_refund"
    __table_args__ = (UniqueConstraint("idempotency_key", name="refund_once_per_key"),)
    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(index=True, foreign_key="erp_order.id")
    payment_id: int = Field(foreign_key="erp_payment.id")
    amount: float
    currency: str
    reason: str = ""
    idempotency_key: str
    created_at: datetime


class ReturnRefund(SQLModel, table=True):
    """A return's refund: one per return (its key), taken in the refund's transaction."""

    __tablename__ = "erp_return_refund"
    rma_id: int = Field(primary_key=True, foreign_key="erp_rma.id")
    refund_key: str


class ReturnAuthorization(SQLModel, table=True):
    __tablename__ = "erp_rma"
    __table_args__ = (UniqueConstraint("idempotency_key", name="rma_once_per_key"),)
    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(index=True, foreign_key="erp_order.id")
    lines: str  # JSON: [{"line_no": 1, "quantity": 1}]
    reason: str
    condition: str
    refund_amount: float
    currency: str = "CNY"
    status: str = "authorized"  # authorized, received
    idempotency_key: str
    created_at: datetime
