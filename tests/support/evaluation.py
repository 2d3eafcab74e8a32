"""The evaluation tests' app (``--app tests.support.evaluation``): the business tools over a
small seeded shop, the shipped policies, and two scripted model configurations that read the
same messages differently — ``reader`` right, ``misreader`` wrong in two ways.

``misreader`` takes a message with "sealed" for a cancellation (a write the recording of a
return never holds) and reads "twice" as order A9999 (no such order: the gate denies it)."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage
from sqlalchemy import inspect
from sqlmodel import Session, col, select

from chamberlain.agents import ModelRegistry, ScriptedChatModel, Tier
from chamberlain.tools import ToolContext, ToolRegistry
from chamberlain.tools._business import business_tools
from chamberlain.tools._seed import REFERENCE_DAY, seed
from chamberlain.tools.crm.embedded import EmbeddedCrm
from chamberlain.tools.erp.embedded import EmbeddedErp
from chamberlain.tools.erp.models import Order

GRAPH = Path(__file__).parents[1] / "graphs" / "eval_returns.yaml"
DEFAULT_SHOP = Path(tempfile.gettempdir()) / "chamberlain-eval-tests" / "shop.sqlite"


def evaluation_tools(url: str) -> ToolRegistry:
    """The business tools over the shop at ``url``, seeded (small) if empty."""
    erp = EmbeddedErp(url)
    if not inspect(erp.engine).has_table("erp_order"):
        seed(erp, EmbeddedCrm(erp.engine), customers=30, orders=120)
    folder = Path(url.removeprefix("sqlite:///")).parent
    return business_tools(erp, EmbeddedCrm(erp.engine), labels_dir=folder / "labels", today=REFERENCE_DAY)


def tools() -> ToolRegistry:
    DEFAULT_SHOP.parent.mkdir(parents=True, exist_ok=True)
    return evaluation_tools(f"sqlite:///{DEFAULT_SHOP}")


def _extract(messages: Sequence[BaseMessage], misread: bool) -> str:
    text = str(messages[-1].content)
    found = re.search(r"A[0-9]{4}", text)
    answer: dict[str, Any] = {"intent": "return", "order_id": found.group(0) if found else "none", "quantity": 1}
    if misread and "sealed" in text:
        answer["intent"] = "cancel"
    if misread and "twice" in text:
        answer["order_id"] = "A9999"
    return json.dumps(answer)


def _registry(misread: bool) -> ModelRegistry:
    registry = ModelRegistry()
    model = ScriptedChatModel(respond=lambda messages, _kwargs: _extract(messages, misread))
    registry.register("scripted", model, Tier.EDGE, trust=["pii", "financial"], cost_per_1k_input=0.01)
    return registry


def reader() -> ModelRegistry:
    return _registry(misread=False)


def misreader() -> ModelRegistry:
    return _registry(misread=True)


models = reader


async def pick_orders(tools: ToolRegistry, url: str) -> dict[str, tuple[str, str, float]]:
    """Delivered orders for three cases — ``small`` (eligible, refund ≤ 200), ``large`` (eligible,
    above 200: a manager approves) and ``late`` (not eligible) — as (order, customer, refund)."""
    with Session(EmbeddedErp(url).engine) as session:
        orders = session.exec(select(Order).where(Order.status == "delivered").order_by(col(Order.id))).all()
        candidates = [(o.id, o.customer_id) for o in orders]
    found: dict[str, tuple[str, str, float]] = {}
    context = ToolContext(step_id="pick/evaluate/1", idempotency_key="pick")
    for order_id, customer in candidates:
        args = {"order_id": order_id, "lines": [{"line_no": 1, "quantity": 1}], "condition": "unopened"}
        decision = await tools.invoke("returns.evaluate", args, context)
        amount = decision["refund_amount"] + decision["refunded"]
        kind = "late" if not decision["eligible"] else "small" if amount <= 200 else "large"
        if kind not in found and customer not in {c for _, c, _ in found.values()}:
            found[kind] = (order_id, customer, decision["refund_amount"])
        if len(found) == 3:
            return found
    raise AssertionError(f"the small seed lacks a case: found only {sorted(found)}")


def cases(orders: dict[str, tuple[str, str, float]]) -> list[dict[str, Any]]:
    """Three cases in both languages: an automatic refund, an approved one, a declined one."""
    (small, c1, r1), (large, c2, r2), (late, c3, _) = orders["small"], orders["large"], orders["late"]

    def principal(customer: str) -> dict[str, Any]:
        return {"id": f"helpdesk:{customer}", "kind": "service", "roles": ["helpdesk"], "customer": customer}

    return [
        {
            "id": "small",
            "lang": "zh",
            "input": {"message": f"订单 {small} 还没拆封 (still sealed)，想退货", "customer_id": c1},
            "principal": principal(c1),
            "expect": {
                "intent": "return",
                "order_id": small,
                "decision": "done",
                "escalate": False,
                "refund_total": r1,
                "must_not": ["erp.order.cancel"],
            },
        },
        {
            "id": "large",
            "lang": "en",
            "input": {"message": f"I was charged twice, return order {large} please", "customer_id": c2},
            "principal": principal(c2),
            "expect": {
                "intent": "return",
                "order_id": large,
                "decision": "done",
                "escalate": True,
                "refund_total": r2,
                "lines": [{"line_no": 1, "quantity": 1}],
            },
        },
        {
            "id": "late",
            "lang": "en",
            "input": {"message": f"Can I still return order {late}?", "customer_id": c3},
            "principal": principal(c3),
            "expect": {
                "intent": "return",
                "order_id": late,
                "decision": "declined",
                "escalate": False,
                "refund_total": 0,
                "must_not": ["returns.refund", "erp.refund.create"],
            },
        },
    ]
