"""The quickstart's tools and models: a tiny shop in SQLite with idempotent refunds, and
the embedded small model.

A refund stores the idempotency key it was made with, under a unique constraint, so a
retried or replayed step answers with the first refund instead of paying twice. Orders name
their owner, and refunds add up: one order never refunds more than its total, and a refund
pinned to the refunded amount it was decided on fails if another came first — checked and
written in one ``BEGIN IMMEDIATE`` transaction, so two refunds at once cannot both pass.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

from pydantic import BaseModel, Field

from chamberlain.agents import ModelCatalog, ModelRegistry
from chamberlain.tools import Effect, Resource, ToolContext, ToolRegistry, ToolRejected, tool
from chamberlain.workflows import GRANT_SECRET_ENV, AuditLog, Gate, PolicyEngine, grant_secret, persisted_secret

POLICIES = Path(__file__).with_name("policies")  # joins the shipped Cedar policies
ORDERS = {"A1001": ("alice", 89.0), "A1002": ("bob", 120.5), "A1003": ("chen", 1299.0)}  # owner, total


def _db() -> sqlite3.Connection:
    path = Path(os.environ.get("QUICKSTART_DB", ".chamberlain/quickstart-shop.sqlite"))
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, timeout=30)  # transactions begun explicitly
    db.execute("CREATE TABLE IF NOT EXISTS refunds (key TEXT PRIMARY KEY, order_id TEXT, amount REAL)")
    return db


def _refunded(db: sqlite3.Connection, order_id: str) -> float:
    (total,) = db.execute("SELECT COALESCE(SUM(amount), 0) FROM refunds WHERE order_id = ?", (order_id,)).fetchone()
    return float(total)


def _order(order_id: str, extra: dict[str, object] | None = None, pin: float | None = None) -> Resource:
    """An order as policy sees it: its owner, total and refunded-so-far (no owner if unknown);
    ``pinned`` if a refund's ``pin`` is the refunded amount this decision sees (a pin ahead of a
    refund not made yet would let two refunds decided at once both pass the limit)."""
    if order_id not in ORDERS:
        return Resource("Order", order_id, extra or {})
    owner, total = ORDERS[order_id]
    with closing(_db()) as db:
        refunded = _refunded(db, order_id)
    money = {"owner": owner, "total": total, "refunded": refunded, "currency": "CNY"}
    pinned = pin is not None and abs(refunded - pin) < 0.005
    return Resource("Order", order_id, {**money, **(extra or {}), "pinned": pinned})


class OrderQuery(BaseModel):
    order_id: str


class Order(BaseModel):
    order_id: str
    total: float
    refunded: float
    status: str


class RefundRequest(BaseModel):
    order_id: str
    amount: float = Field(gt=0)
    expected_refunded: float | None = Field(
        None, ge=0, description="the order's refunded amount this refund was decided on; refused if it changed"
    )


class Refund(BaseModel):
    refund_id: str
    amount: float


@tool(
    "shop.order",
    action="shop.order.read",
    labels={"total": ["financial"], "refunded": ["financial"]},
    resource=lambda a: _order(a.order_id),
)
async def get_order(args: OrderQuery, ctx: ToolContext) -> Order:
    """Look an order up by its ID (A and four digits)."""
    if args.order_id not in ORDERS:
        raise ToolRejected(f"no order {args.order_id}")
    with closing(_db()) as db:
        refunded = _refunded(db, args.order_id)
    return Order(order_id=args.order_id, total=ORDERS[args.order_id][1], refunded=refunded, status="delivered")


@tool(
    "shop.refund",
    effect=Effect.WRITE,
    action="shop.refund.create",
    resource=lambda a: _order(a.order_id, {"amount": a.amount}, pin=a.expected_refunded),
)
async def refund(args: RefundRequest, ctx: ToolContext) -> Refund:
    """Refund an order, once per idempotency key, never beyond what is left of its total."""
    if args.order_id not in ORDERS:
        raise ToolRejected(f"no order {args.order_id}")
    total = ORDERS[args.order_id][1]
    with closing(_db()) as db:
        db.execute("BEGIN IMMEDIATE")  # the check and the write under one write lock
        try:
            if not db.execute("SELECT 1 FROM refunds WHERE key = ?", (ctx.idempotency_key,)).fetchone():
                refunded = _refunded(db, args.order_id)
                if args.expected_refunded is not None and abs(refunded - args.expected_refunded) >= 0.005:
                    raise ToolRejected(
                        f"order {args.order_id} had {refunded:.2f} refunded, not the {args.expected_refunded:.2f} "
                        "this refund was decided on: look the order up again"
                    )
                if refunded + args.amount > total + 1e-6:
                    raise ToolRejected(
                        f"refund of {args.amount} on order {args.order_id} exceeds the {total - refunded:.2f} left"
                    )
                db.execute("INSERT INTO refunds VALUES (?, ?, ?)", (ctx.idempotency_key, args.order_id, args.amount))
            rowid, amount = db.execute(
                "SELECT rowid, amount FROM refunds WHERE key = ?", (ctx.idempotency_key,)
            ).fetchone()
            db.execute("COMMIT")
        finally:
            if db.in_transaction:
                db.execute("ROLLBACK")
    return Refund(refund_id=f"RF{rowid:05d}", amount=amount)


def tools() -> ToolRegistry:
    return ToolRegistry([get_order, refund])


def models() -> ModelRegistry:
    """The models of ``models.yaml``; the embedded one at ``$CHAMBERLAIN_EMBEDDED_URL`` when set."""
    catalog = ModelCatalog.load(Path(__file__).with_name("models.yaml"))
    return ModelRegistry.from_catalog(catalog, embedded_url=os.environ.get("CHAMBERLAIN_EMBEDDED_URL"))


def gate(tools: ToolRegistry) -> Gate:
    """The permission gate over ``tools``: the shipped Cedar policies and the shop's own, audited
    under ``$CHAMBERLAIN_DATA`` (default ``.chamberlain/``); tickets signed with
    ``$CHAMBERLAIN_GRANT_SECRET``, else a key kept there (worker and starter share it)."""
    data = Path(os.environ.get("CHAMBERLAIN_DATA", ".chamberlain"))
    secret = grant_secret() if os.environ.get(GRANT_SECRET_ENV) else persisted_secret(data)
    return Gate(PolicyEngine.load(POLICIES), AuditLog(f"sqlite:///{data / 'quickstart-audit.sqlite'}"), tools, secret)
