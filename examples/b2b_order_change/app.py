"""The scenario's tools, models and gate: the business tools over an embedded ERP seeded with a
few open B2B orders, plus the business's own write — changing an order line — and the embedded
small model.

``b2b.order.change`` is the adapter a business writes for a write its ERP contract lacks. It is
exactly-once per idempotency key (a unique column, checked and written in one transaction),
pinned to the line's quantity the change was drafted on (refused if someone changed the line
since), and takes the extra units out of stock with a conditional ``UPDATE … WHERE on_hand >= n``,
so two changes at once cannot both take the last units.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import UniqueConstraint, inspect, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field as Column
from sqlmodel import Session, SQLModel, col, select

from chamberlain.agents import ModelCatalog, ModelRegistry
from chamberlain.tools import (
    Effect,
    Resource,
    ToolAdapter,
    ToolContext,
    ToolRegistry,
    ToolRejected,
    business_tools,
    crm_backend,
    tool,
)
from chamberlain.tools.erp.embedded import EmbeddedErp
from chamberlain.tools.erp.models import Inventory, Order, OrderLine, Product, Warehouse
from chamberlain.workflows import GRANT_SECRET_ENV, AuditLog, Gate, PolicyEngine, grant_secret, persisted_secret

POLICIES = Path(__file__).with_name("policies")  # joins the shipped Cedar policies


def data_dir() -> Path:
    return Path(os.environ.get("CHAMBERLAIN_DATA", ".chamberlain"))


def database_url() -> str:
    """``B2B_ERP``: the ERP's database URL; default a SQLite file in the data folder."""
    return os.environ.get("B2B_ERP", f"sqlite:///{data_dir() / 'b2b-erp.sqlite'}")


class OrderChangeRecord(SQLModel, table=True):
    """One committed change of an order line; the key makes a repeated commit answer with the first."""

    __tablename__ = "b2b_order_change"
    __table_args__ = (UniqueConstraint("idempotency_key", name="order_change_once_per_key"),)
    id: int | None = Column(default=None, primary_key=True)
    order_id: str = Column(index=True, foreign_key="erp_order.id")
    line_no: int
    old_quantity: int
    new_quantity: int
    idempotency_key: str
    created_at: datetime


# -- the seeded shop ------------------------------------------------------------------------------

CUSTOMERS = {"C20001": "上海恒通机电 (Hengtong Electromechanical)", "C20002": "Pearl River Hardware Ltd."}


def prepare() -> EmbeddedErp:
    """The embedded ERP, seeded on first use: two products (one nearly sold out), open orders of
    two customers and a shipped one."""
    erp = EmbeddedErp(database_url())
    if inspect(erp.engine).has_table("b2b_order_change"):
        return erp
    erp.create_tables()
    placed = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    with Session(erp.engine) as session:
        session.add(Warehouse(code="SH1", city="Shanghai", address="上海市嘉定区 物流园 88号", currency="CNY"))
        session.add(Product(sku="BOLT-M8", name="Hex bolt M8, box of 100", category="hardware", price=18.0))
        session.add(Product(sku="PUMP-200", name="Centrifugal pump 200 W", category="machinery", price=1280.0))
        session.flush()
        session.add(Inventory(sku="BOLT-M8", warehouse="SH1", on_hand=500))
        session.add(Inventory(sku="PUMP-200", warehouse="SH1", on_hand=3))
        for order_id, customer, status, lines in (
            ("B2001", "C20001", "placed", [("BOLT-M8", 100, 18.0), ("PUMP-200", 1, 1280.0)]),
            ("B2002", "C20002", "placed", [("PUMP-200", 2, 1280.0)]),
            ("B2003", "C20001", "shipped", [("BOLT-M8", 50, 18.0)]),
        ):
            total = sum(q * p for _, q, p in lines)
            ship_to = CUSTOMERS[customer]
            session.add(
                Order(
                    id=order_id,
                    customer_id=customer,
                    placed_at=placed,
                    status=status,
                    total=total,
                    warehouse="SH1",
                    ship_to=ship_to,
                )
            )
            session.flush()
            for line_no, (sku, quantity, price) in enumerate(lines, 1):
                session.add(OrderLine(order_id=order_id, line_no=line_no, sku=sku, quantity=quantity, unit_price=price))
        session.commit()
    return erp


setup = prepare  # `chamberlain dev` and `chamberlain worker` seed the embedded ERP before serving


# -- the business's own write ---------------------------------------------------------------------


class LineChange(BaseModel):
    order_id: str
    line_no: int = Field(ge=1)
    quantity: int = Field(ge=1, description="the line's new quantity")
    expected_quantity: int = Field(ge=1, description="the line's quantity this change was drafted on")


class ChangeView(BaseModel):
    change_id: str
    order_id: str
    line_no: int
    old_quantity: int
    new_quantity: int


def order_change_tool(erp: EmbeddedErp) -> ToolAdapter[Any, Any]:
    """``b2b.order.change`` over ``erp``'s database."""

    async def line_resource(args: LineChange) -> Resource:
        """The order as policy sees it: its owner and status from the ERP (no owner if unknown)."""
        try:
            order = await erp.get_order(args.order_id)
        except ToolRejected:
            return Resource("Order", args.order_id)
        return Resource("Order", order.id, {"owner": order.customer_id, "status": order.status})

    @tool("b2b.order.change", effect=Effect.WRITE, action="b2b.order.change", resource=line_resource)
    async def change_line(args: LineChange, ctx: ToolContext) -> ChangeView:
        """Set an open order's line to a new quantity, taking the extra units from stock, once per key."""
        return await asyncio.to_thread(_change, erp, args, ctx.idempotency_key)

    return change_line


def _change(erp: EmbeddedErp, args: LineChange, key: str) -> ChangeView:
    with Session(erp.engine) as session:
        if done := session.exec(select(OrderChangeRecord).where(OrderChangeRecord.idempotency_key == key)).first():
            return _view(done)
        order = session.get(Order, args.order_id)
        line = session.get(OrderLine, (args.order_id, args.line_no))
        if order is None or line is None:
            raise ToolRejected(f"order {args.order_id} has no line {args.line_no}")
        if order.status != "placed":
            raise ToolRejected(f"order {args.order_id} is {order.status}: only an order not yet shipped can change")
        pinned = session.execute(
            update(OrderLine)
            .where(
                col(OrderLine.order_id) == args.order_id,
                col(OrderLine.line_no) == args.line_no,
                col(OrderLine.quantity) == args.expected_quantity,
            )
            .values(quantity=args.quantity)
        )
        if pinned.rowcount == 0:  # type: ignore[attr-defined]
            session.rollback()
            raise ToolRejected(
                f"line {args.line_no} of order {args.order_id} is no longer {args.expected_quantity} units: "
                "draft the change again"
            )
        more = args.quantity - args.expected_quantity
        taken = session.execute(
            update(Inventory)
            .where(
                col(Inventory.sku) == line.sku,
                col(Inventory.warehouse) == order.warehouse,
                col(Inventory.on_hand) >= max(more, 0),
            )
            .values(on_hand=col(Inventory.on_hand) - more)
        )
        if taken.rowcount == 0:  # type: ignore[attr-defined]
            session.rollback()
            raise ToolRejected(f"warehouse {order.warehouse} no longer has {more} more of {line.sku}")
        record = OrderChangeRecord(
            order_id=args.order_id,
            line_no=args.line_no,
            old_quantity=args.expected_quantity,
            new_quantity=args.quantity,
            idempotency_key=key,
            created_at=datetime.now(UTC),
        )
        session.add(record)
        try:
            session.commit()
        except IntegrityError:  # the same key won a race: ours rolls back, theirs answers
            session.rollback()
            return _view(session.exec(select(OrderChangeRecord).where(OrderChangeRecord.idempotency_key == key)).one())
        session.refresh(record)
        return _view(record)


def _view(record: OrderChangeRecord) -> ChangeView:
    return ChangeView(
        change_id=f"OC{record.id:06d}",
        order_id=record.order_id,
        line_no=record.line_no,
        old_quantity=record.old_quantity,
        new_quantity=record.new_quantity,
    )


# -- what a worker needs --------------------------------------------------------------------------


def tools() -> ToolRegistry:
    erp = prepare()
    registry = business_tools(erp, crm_backend(database_url()), labels_dir=data_dir() / "labels")
    registry.register(order_change_tool(erp))
    return registry


def models() -> ModelRegistry:
    """The models of ``models.yaml``; the embedded one at ``$CHAMBERLAIN_EMBEDDED_URL`` when set."""
    catalog = ModelCatalog.load(Path(__file__).with_name("models.yaml"))
    return ModelRegistry.from_catalog(catalog, embedded_url=os.environ.get("CHAMBERLAIN_EMBEDDED_URL"))


def gate(tools: ToolRegistry) -> Gate:
    """The permission gate over ``tools``: the shipped Cedar policies and the business's own,
    audited in the data folder; tickets signed with ``$CHAMBERLAIN_GRANT_SECRET``, else a key
    kept there (worker and starter share it)."""
    data = data_dir()
    secret = grant_secret() if os.environ.get(GRANT_SECRET_ENV) else persisted_secret(data)
    return Gate(PolicyEngine.load(POLICIES), AuditLog(f"sqlite:///{data / 'b2b-audit.sqlite'}"), tools, secret)
