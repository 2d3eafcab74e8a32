"""myproject's order system as Chamberlain tools: look an order up, refund it.

Replace the SQLite table with your own system's client (CRM, ERP, shop). Two habits to keep:
each tool names the ``Resource`` it acts on with its owner and amounts, so Cedar policy can
say "only your own orders" and "limits per order, not per call"; and a write stores the
idempotency key it was made with, so a retried or replayed step never refunds twice.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

from chamberlain.tools import Effect, Resource, ToolContext, ToolRejected, tool
from pydantic import BaseModel, Field

ORDERS = {"A1001": ("C10001", 80.0), "A1002": ("C10002", 450.0)}  # owner (a customer ID), total in CNY


def database() -> sqlite3.Connection:
    """The refunds table, under ``$CHAMBERLAIN_DATA`` (default ``.chamberlain/``)."""
    path = Path(os.environ.get("CHAMBERLAIN_DATA", ".chamberlain")) / "myproject-orders.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    db.execute("CREATE TABLE IF NOT EXISTS refunds (key TEXT PRIMARY KEY, order_id TEXT, amount REAL)")
    return db


def refunded(db: sqlite3.Connection, order_id: str) -> float:
    (total,) = db.execute("SELECT COALESCE(SUM(amount), 0) FROM refunds WHERE order_id = ?", (order_id,)).fetchone()
    return float(total)


def order_resource(order_id: str, extra: dict[str, object] | None = None) -> Resource:
    """An order as policy sees it: owner, total, refunded so far, currency (nothing if unknown)."""
    if order_id not in ORDERS:
        return Resource("Order", order_id, extra or {})
    owner, total = ORDERS[order_id]
    with closing(database()) as db:
        money = {"owner": owner, "total": total, "refunded": refunded(db, order_id), "currency": "CNY"}
    return Resource("Order", order_id, {**money, **(extra or {})})


class OrderQuery(BaseModel):
    order_id: str = Field(pattern=r"^A[0-9]{4}$")


class Order(BaseModel):
    order_id: str
    total: float
    refunded: float


class RefundRequest(BaseModel):
    order_id: str = Field(pattern=r"^A[0-9]{4}$")
    amount: float = Field(gt=0)
    expected_refunded: float = Field(ge=0, description="the refunded amount this refund was decided on")


class Refund(BaseModel):
    refund_id: str
    amount: float


@tool(
    "myproject.order",
    action="myproject.order.read",
    labels={"total": ["financial"], "refunded": ["financial"]},
    resource=lambda a: order_resource(a.order_id),
)
async def get_order(args: OrderQuery, ctx: ToolContext) -> Order:
    """Look an order up by its ID."""
    if args.order_id not in ORDERS:
        raise ToolRejected(f"no order {args.order_id}")
    with closing(database()) as db:
        return Order(order_id=args.order_id, total=ORDERS[args.order_id][1], refunded=refunded(db, args.order_id))


@tool(
    "myproject.refund",
    effect=Effect.WRITE,
    action="myproject.refund.create",
    resource=lambda a: order_resource(a.order_id, {"amount": a.amount, "pinned": True}),
)
async def refund(args: RefundRequest, ctx: ToolContext) -> Refund:
    """Refund an order once per idempotency key, and only if nothing changed since the decision."""
    if args.order_id not in ORDERS:
        raise ToolRejected(f"no order {args.order_id}")
    with closing(database()) as db:
        db.execute("BEGIN IMMEDIATE")  # the check and the write under one lock
        try:
            if not db.execute("SELECT 1 FROM refunds WHERE key = ?", (ctx.idempotency_key,)).fetchone():
                if abs(refunded(db, args.order_id) - args.expected_refunded) >= 0.005:
                    raise ToolRejected(f"order {args.order_id} was refunded meanwhile: look it up again")
                db.execute("INSERT INTO refunds VALUES (?, ?, ?)", (ctx.idempotency_key, args.order_id, args.amount))
            rowid, amount = db.execute(
                "SELECT rowid, amount FROM refunds WHERE key = ?", (ctx.idempotency_key,)
            ).fetchone()
            db.execute("COMMIT")
        finally:
            if db.in_transaction:
                db.execute("ROLLBACK")
    return Refund(refund_id=f"RF{rowid:05d}", amount=amount)
