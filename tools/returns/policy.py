"""Return-policy evaluation: a pure function of the order, the request and the rules.

Money decisions stay deterministic and out of the model: the window from delivery (longer
for promotions such as 11.11), category exclusions, the item's condition, partial returns
and quantities already returned all come from configuration and the ERP's order.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from pydantic import BaseModel, Field

from chamberlain.tools.erp.contract import OrderView, ReturnLine

DEFAULT_POLICY = Path(__file__).with_name("policy.yaml")


class PromotionRule(BaseModel):
    window_days: int | None = None
    restocking_fee: float | None = None


class ReturnPolicy(BaseModel):
    window_days: int = 7
    restocking_fee: float = Field(0.0, ge=0, le=1)
    excluded_categories: list[str] = []
    conditions: dict[str, float] = {"unopened": 1.0}
    promotions: dict[str, PromotionRule] = {}

    @classmethod
    def load(cls, path: str | Path = DEFAULT_POLICY) -> ReturnPolicy:
        return cls.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")))


class ReturnRequest(BaseModel):
    order_id: str
    lines: list[ReturnLine] = Field(min_length=1)
    condition: str
    reason: str = ""


class ReturnDecision(BaseModel):
    """``refunded``: what the order had refunded when this was decided — a refund pins itself to it."""

    eligible: bool
    refund_amount: float
    currency: str
    refunded: float
    reasons: list[str]
    window_ends: datetime | None


def evaluate(
    policy: ReturnPolicy, order: OrderView, request: ReturnRequest, today: datetime | None = None
) -> ReturnDecision:
    """Whether the return may go ahead, for how much, and every reason it may not."""
    today = today or datetime.now(UTC)
    rule = policy.promotions.get(order.promotion or "", PromotionRule())
    window = rule.window_days if rule.window_days is not None else policy.window_days
    fee = rule.restocking_fee if rule.restocking_fee is not None else policy.restocking_fee
    reasons: list[str] = []
    window_ends = None
    if order.delivered_at is None:
        reasons.append(f"order {order.id} is not delivered yet")
    else:
        delivered = order.delivered_at if order.delivered_at.tzinfo else order.delivered_at.replace(tzinfo=UTC)
        window_ends = delivered + timedelta(days=window)
        if today > window_ends:
            reasons.append(f"the {window}-day return window ended on {window_ends:%Y-%m-%d}")
    share = policy.conditions.get(request.condition, 0.0)
    if share <= 0:
        reasons.append(f"items in condition '{request.condition}' cannot be returned")
    lines = {line.line_no: line for line in order.lines}
    amount = 0.0
    for asked in request.lines:
        line = lines.get(asked.line_no)
        if line is None:
            reasons.append(f"order {order.id} has no line {asked.line_no}")
            continue
        if line.category in policy.excluded_categories:
            reasons.append(f"line {line.line_no} ({line.name}) is {line.category}, which cannot be returned")
        left = line.quantity - line.returned_quantity
        if asked.quantity > left:
            reasons.append(f"line {line.line_no} has {left} left to return, not {asked.quantity}")
        amount += line.unit_price * asked.quantity
    refund = round(amount * share * (1 - fee), 2)
    refundable = round(order.paid - order.refunded, 2)
    if refund > refundable:
        reasons.append(f"refund {refund} exceeds the {refundable} still refundable")
    return ReturnDecision(
        eligible=not reasons,
        refund_amount=refund if not reasons else 0.0,
        currency=order.currency,
        refunded=order.refunded,
        reasons=reasons,
        window_ends=window_ends,
    )
