"""The support agent's systems: orders, the return policy, and return proposals.

Three tools a support agent chooses among: look an order up, check it against the return
policy, propose a return. Lookups read; a proposal writes — once per idempotency key (a
unique key in SQLite), so a retried or replayed call proposes nothing twice — and it is an
``irreversible`` step for the static review, so the shipped policy must bound it (here: a
proposal over 200 CNY needs a manager; see ``policies/``).
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

from pydantic import BaseModel, Field

from chamberlain.tools import Effect, Resource, ToolContext, ToolRegistry, ToolRejected, tool

POLICIES = Path(__file__).with_name("policies")
GRAPH = Path(__file__).with_name("graph.yaml")
MODELS = Path(__file__).with_name("models.yaml")
ORDERS = {  # order: owner, category, total (CNY), days since delivery
    "A1001": ("alice", "shoes", 89.0, 5),
    "A1002": ("bob", "headphones", 420.0, 12),
    "A1003": ("chen", "food", 35.0, 2),
    "A1004": ("dana", "jacket", 199.0, 40),
}
RETURN_DAYS = {"shoes": 30, "headphones": 15, "jacket": 30}  # food is not returnable


def _db() -> sqlite3.Connection:
    path = Path(os.environ.get("SUPPORT_AGENT_DB", ".chamberlain/support-agent.sqlite"))
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30)
    db.execute("CREATE TABLE IF NOT EXISTS proposals (key TEXT PRIMARY KEY, order_id TEXT, amount REAL, reason TEXT)")
    return db


class OrderQuery(BaseModel):
    order_id: str = Field(pattern=r"^A\d{4}$", description="the order number, e.g. A1001")


class Order(BaseModel):
    order_id: str
    category: str
    total: float
    days_since_delivery: int


class PolicyAnswer(BaseModel):
    order_id: str
    returnable: bool
    reason: str


class Proposal(BaseModel):
    order_id: str = Field(pattern=r"^A\d{4}$")
    amount: float = Field(gt=0, description="the refund proposed, in CNY")
    reason: str = Field(max_length=200)


class Proposed(BaseModel):
    proposal_id: str
    order_id: str
    amount: float


def _known(order_id: str) -> tuple[str, str, float, int]:
    if order_id not in ORDERS:
        raise ToolRejected(f"no order {order_id}")
    return ORDERS[order_id]


def _order_resource(args: OrderQuery | Proposal) -> Resource:
    owner, _, total, _ = ORDERS.get(args.order_id, ("", "", 0.0, 0))
    amount = {"amount": args.amount, "total": total, "refunded": 0.0} if isinstance(args, Proposal) else {}
    return Resource("Order", args.order_id, {"owner": owner, "currency": "CNY", **amount} if owner else amount)


@tool("support.order", action="erp.order.read", resource=_order_resource)
async def get_order(args: OrderQuery, ctx: ToolContext) -> Order:
    """Look an order up: its category, total and days since delivery."""
    _, category, total, days = _known(args.order_id)
    return Order(order_id=args.order_id, category=category, total=total, days_since_delivery=days)


@tool("support.policy", action="erp.order.read", resource=_order_resource)
async def check_policy(args: OrderQuery, ctx: ToolContext) -> PolicyAnswer:
    """Check whether an order may be returned under the return policy."""
    _, category, _, days = _known(args.order_id)
    window = RETURN_DAYS.get(category)
    if window is None:
        return PolicyAnswer(order_id=args.order_id, returnable=False, reason=f"{category} cannot be returned")
    ok = days <= window
    reason = f"{days} days since delivery, {'within' if ok else 'past'} the {window}-day window for {category}"
    return PolicyAnswer(order_id=args.order_id, returnable=ok, reason=reason)


@tool("support.propose_return", effect=Effect.IRREVERSIBLE, action="returns.proposal.create", resource=_order_resource)
async def propose_return(args: Proposal, ctx: ToolContext) -> Proposed:
    """Propose a return with a refund amount; once per idempotency key."""
    _, _, total, _ = _known(args.order_id)
    if args.amount > total:
        raise ToolRejected(f"{args.amount} is more than the order's total {total}")
    with closing(_db()) as db, db:
        db.execute(
            "INSERT OR IGNORE INTO proposals VALUES (?, ?, ?, ?)",
            (ctx.idempotency_key, args.order_id, args.amount, args.reason),
        )
        (rowid,) = db.execute("SELECT rowid FROM proposals WHERE key = ?", (ctx.idempotency_key,)).fetchone()
    return Proposed(proposal_id=f"P{rowid:05d}", order_id=args.order_id, amount=args.amount)


def tools() -> ToolRegistry:
    return ToolRegistry([get_order, check_policy, propose_return])


def proposals() -> list[tuple[str, str, float]]:
    with closing(_db()) as db:
        return list(db.execute("SELECT key, order_id, amount FROM proposals ORDER BY rowid"))
