"""Every business adapter, on SQLite and PostgreSQL, embedded and over HTTP: the same answers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from chamberlain.tools import Effect, ToolContext, ToolInputInvalid, ToolRegistry, ToolRejected
from chamberlain.tools.business import business_tools, crm_backend, erp_backend
from chamberlain.tools.crm.api import crm_api
from chamberlain.tools.crm.embedded import EmbeddedCrm
from chamberlain.tools.erp.api import erp_api
from chamberlain.tools.erp.embedded import EmbeddedErp
from chamberlain.tools.seed import REFERENCE_DAY, seed
from tests.support.servers import serving

EXPECTED = {  # adapter: (action, effect, labelled output fields)
    "crm.customer.get": ("crm.customer.read", Effect.READ, {"name", "email", "phone", "address"}),
    "crm.ticket.open": ("crm.ticket.create", Effect.WRITE, set()),
    "erp.order.get": ("erp.order.read", Effect.READ, {"total", "paid", "refunded"}),
    "erp.refund.create": ("erp.refund.create", Effect.IRREVERSIBLE, {"amount"}),
    "returns.evaluate": ("returns.evaluate", Effect.READ, {"refund_amount"}),
    "returns.authorize": ("returns.rma.create", Effect.WRITE, {"refund_amount"}),
    "returns.label": ("returns.label.create", Effect.WRITE, set()),
    "returns.refund": ("erp.refund.create", Effect.IRREVERSIBLE, {"amount"}),
    "returns.receive": ("returns.rma.receive", Effect.WRITE, set()),
}


@pytest.fixture(params=["embedded", "http"])
def registry(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> Iterator[ToolRegistry]:
    erp = EmbeddedErp(database_url)
    crm = EmbeddedCrm(erp.engine)
    seed(erp, crm, customers=30, orders=120)
    with ExitStack() as stack:
        if request.param == "http":
            erp_url = stack.enter_context(serving(erp_api(erp)))
            crm_url = stack.enter_context(serving(crm_api(crm)))
            yield business_tools(erp_backend(erp_url), crm_backend(crm_url), labels_dir=tmp_path, today=REFERENCE_DAY)
        else:
            yield business_tools(erp, crm, labels_dir=tmp_path, today=REFERENCE_DAY)


def ctx(key: str) -> ToolContext:
    return ToolContext(step_id=key, idempotency_key=key)


async def test_each_adapter_declares_its_action_effect_and_labels(registry: ToolRegistry) -> None:
    assert {name: (a.action, a.effect, set(a.labels)) for name, a in registry.items()} == EXPECTED
    assert registry["crm.customer.get"].labels["phone"] == ("pii",)
    assert (await registry["erp.refund.create"].resource_of({"order_id": "A1", "amount": 5})).attributes == {
        "amount": 5
    }


async def first_eligible(registry: ToolRegistry) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The first seeded order with a line the policy lets the customer return today."""
    for n in range(1000, 1120):
        order = await registry.invoke("erp.order.get", {"order_id": f"A{n}"}, ctx("k"))
        for line in order["lines"]:
            ask = {
                "order_id": order["id"],
                "lines": [{"line_no": line["line_no"], "quantity": 1}],
                "condition": "wrong_item",
            }
            decision = await registry.invoke("returns.evaluate", ask, ctx("k"))
            if decision["eligible"]:
                return order, ask, decision
    raise AssertionError("no eligible return in the seed")


async def test_a_return_from_evaluation_to_restock(registry: ToolRegistry) -> None:
    order, ask, decision = await first_eligible(registry)
    customer = await registry.invoke("crm.customer.get", {"customer_id": order["customer_id"]}, ctx("k"))
    assert customer["id"] == order["customer_id"] and customer["phone"].startswith("+86")
    ticket = await registry.invoke(
        "crm.ticket.open", {"customer_id": customer["id"], "subject": "return"}, ctx("r/t/1")
    )
    assert ticket == await registry.invoke(
        "crm.ticket.open", {"customer_id": customer["id"], "subject": "return"}, ctx("r/t/1")
    )

    rma = await registry.invoke("returns.authorize", ask, ctx("r/a/1"))
    assert rma == await registry.invoke("returns.authorize", ask, ctx("r/a/1"))
    assert rma["refund_amount"] == pytest.approx(decision["refund_amount"]) and rma["refund_amount"] > 0
    label = await registry.invoke("returns.label", {"rma": rma["rma"]}, ctx("r/l/1"))
    assert Path(label["path"]).read_bytes().startswith(b"%PDF")
    refund = await registry.invoke("returns.refund", {"rma": rma["rma"]}, ctx("r/f/1"))
    assert refund["amount"] == pytest.approx(decision["refund_amount"])
    assert refund == await registry.invoke("returns.refund", {"rma": rma["rma"]}, ctx("r/f/1"))
    after = await registry.invoke("erp.order.get", {"order_id": order["id"]}, ctx("k"))
    assert after["refunded"] == pytest.approx(refund["amount"])
    received = await registry.invoke("returns.receive", {"rma": rma["rma"]}, ctx("r/g/1"))
    assert received["status"] == "received"


async def test_an_ineligible_return_is_refused_with_its_reasons(registry: ToolRegistry) -> None:
    order = await registry.invoke("erp.order.get", {"order_id": "A1002"}, ctx("k"))  # delivered in September
    ask = {"order_id": order["id"], "lines": [{"line_no": 1, "quantity": 1}], "condition": "unopened"}
    assert not (await registry.invoke("returns.evaluate", ask, ctx("k")))["eligible"]
    with pytest.raises(ToolRejected, match="return not allowed: the 7-day return window ended"):
        await registry.invoke("returns.authorize", ask, ctx("r/a/2"))
    with pytest.raises(ToolInputInvalid, match=r"returns.evaluate: lines: List should have at least 1 item"):
        await registry.invoke("returns.evaluate", {**ask, "lines": []}, ctx("k"))
