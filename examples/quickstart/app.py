"""The quickstart's tools and models: a tiny shop in SQLite with idempotent refunds, and
the embedded small model.

A refund stores the idempotency key it was made with, under a unique constraint, so a
retried or replayed step answers with the first refund instead of paying twice.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

from pydantic import BaseModel

from chamberlain.agents import ModelCatalog, ModelRegistry
from chamberlain.tools import Effect, Resource, ToolContext, ToolRegistry, ToolRejected, tool
from chamberlain.workflows import AuditLog, Gate, PolicyEngine

POLICIES = Path(__file__).with_name("policies")  # joins the shipped Cedar policies
ORDERS = {"A1001": 89.0, "A1002": 120.5, "A1003": 1299.0}


def _db() -> sqlite3.Connection:
    path = Path(os.environ.get("QUICKSTART_DB", ".chamberlain/quickstart-shop.sqlite"))
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE IF NOT EXISTS refunds (key TEXT PRIMARY KEY, order_id TEXT, amount REAL)")
    return db


class OrderQuery(BaseModel):
    order_id: str


class Order(BaseModel):
    order_id: str
    total: float
    status: str


class RefundRequest(BaseModel):
    order_id: str
    amount: float


class Refund(BaseModel):
    refund_id: str
    amount: float


@tool("shop.order", action="shop.order.read", labels={"total": ["financial"]})
async def get_order(args: OrderQuery, ctx: ToolContext) -> Order:
    """Look an order up by its ID (A and four digits)."""
    if args.order_id not in ORDERS:
        raise ToolRejected(f"no order {args.order_id}")
    return Order(order_id=args.order_id, total=ORDERS[args.order_id], status="delivered")


@tool("shop.refund", effect=Effect.WRITE, action="shop.refund.create",
      resource=lambda a: Resource("Order", a.order_id, {"amount": a.amount, "currency": "CNY"}))  # fmt: skip
async def refund(args: RefundRequest, ctx: ToolContext) -> Refund:
    """Refund an order, once per idempotency key."""
    with closing(_db()) as db, db:
        db.execute("INSERT OR IGNORE INTO refunds VALUES (?, ?, ?)", (ctx.idempotency_key, args.order_id, args.amount))
        rowid, amount = db.execute("SELECT rowid, amount FROM refunds WHERE key = ?", (ctx.idempotency_key,)).fetchone()
    return Refund(refund_id=f"RF{rowid:05d}", amount=amount)


def tools() -> ToolRegistry:
    return ToolRegistry([get_order, refund])


def models() -> ModelRegistry:
    """The models of ``models.yaml``; the embedded one at ``$CHAMBERLAIN_EMBEDDED_URL`` when set."""
    catalog = ModelCatalog.load(Path(__file__).with_name("models.yaml"))
    return ModelRegistry.from_catalog(catalog, embedded_url=os.environ.get("CHAMBERLAIN_EMBEDDED_URL"))


def gate(tools: ToolRegistry) -> Gate:
    """The permission gate over ``tools``: the shipped Cedar policies and the shop's own, audited
    under ``$CHAMBERLAIN_DATA`` (default ``.chamberlain/``)."""
    data = Path(os.environ.get("CHAMBERLAIN_DATA", ".chamberlain"))
    return Gate(PolicyEngine.load(POLICIES), AuditLog(f"sqlite:///{data / 'quickstart-audit.sqlite'}"), tools)
