"""Every business adapter, on SQLite and PostgreSQL, embedded and over HTTP: the same answers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from chamberlain.tools import Effect, ToolContext, ToolInputInvalid, ToolRegistry, ToolRejected
from chamberlain.tools._business import business_tools, crm_backend, erp_backend
from chamberlain.tools._seed import REFERENCE_DAY, seed
from chamberlain.tools.crm.api import crm_api
from chamberlain.tools.crm.embedded import EmbeddedCrm
from chamberlain.tools.erp.api import erp_api
from chamberlain.tools.erp.embedded import EmbeddedErp
from tests.support.servers import serving

EXPECTED = {  # adapter: (action, effect, labelled output fields)
    "crm.customer.get": ("crm.customer.read", Effect.READ, {"name", "email", "phone", "address"}),
    "crm.ticket.open": ("crm.ticket.create", Effect.WRITE, set()),
    "erp.order.get": ("erp.order.read", Effect.READ, {"total", "paid", "refunded"}),
    "erp.stock.get": ("erp.stock.read", Effect.READ, set()),
    "erp.order.status": ("erp.order.read", Effect.READ, set()),
    "erp.order.cancel": ("erp.order.cancel", Effect.WRITE, set()),
    "erp.refund.create": ("erp.refund.create", Effect.IRREVERSIBLE, {"amount"}),
    "returns.evaluate": ("returns.evaluate", Effect.READ, {"refund_amount", "refunded"}),
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


async def test_resources_name_their_owner_and_money_from_the_system_of_record(registry: ToolRegistry) -> None:
    order = await registry.invoke("erp.order.get", {"order_id": "A1003"}, ctx("k"))
    money = {"owner": order["customer_id"], "currency": order["currency"], "total": order["total"], "refunded": 0.0}
    refund = registry["erp.refund.create"]
    pinned = await refund.resource_of({"order_id": "A1003", "amount": 5, "expected_refunded": 0})
    assert (pinned.type, pinned.id) == ("Order", "A1003")
    assert dict(pinned.attributes) == {**money, "amount": 5, "pinned": True}
    assert (await refund.resource_of({"order_id": "A1003", "amount": 5})).attributes["pinned"] is False
    assert dict((await registry["erp.order.get"].resource_of({"order_id": "A1003"})).attributes) == money
    # an order the ERP does not know names no owner (policy refuses it to a customer); the tool says why
    assert dict((await refund.resource_of({"order_id": "A9999", "amount": 5})).attributes) == {
        "amount": 5,
        "pinned": False,
    }
    owner = order["customer_id"]
    other = next(c for c in (f"C{10000 + i}" for i in range(30)) if c != owner)
    ticket = registry["crm.ticket.open"]
    assert (await ticket.resource_of({"customer_id": owner, "subject": "s", "order_id": "A1003"})).attributes == {
        "owner": owner
    }
    # a ticket about someone else's order (or one that does not exist) is nobody's
    assert (await ticket.resource_of({"customer_id": other, "subject": "s", "order_id": "A1003"})).attributes == {}
    assert (await ticket.resource_of({"customer_id": owner, "subject": "s", "order_id": "A9999"})).attributes == {}
    assert (await registry["crm.customer.get"].resource_of({"customer_id": other})).attributes == {"owner": other}


async def first_eligible(
    registry: ToolRegistry, first: int = 1000
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The first seeded order from A``first`` with a line the policy lets the customer return today."""
    for n in range(first, 1120):
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
    resource = await registry["returns.refund"].resource_of({"rma": rma["rma"], "expected_refunded": 0})
    assert (resource.type, resource.attributes["owner"], resource.attributes["amount"]) == (
        "Return",
        order["customer_id"],
        rma["refund_amount"],
    )
    assert resource.attributes["pinned"] is True and resource.attributes["refunded"] == decision["refunded"] == 0
    pinned = {"rma": rma["rma"], "expected_refunded": decision["refunded"]}
    refund = await registry.invoke("returns.refund", pinned, ctx("r/f/1"))
    assert refund["amount"] == pytest.approx(decision["refund_amount"])
    assert refund == await registry.invoke("returns.refund", pinned, ctx("r/f/1"))  # a retry, not a new refund
    again = {"rma": rma["rma"], "expected_refunded": decision["refunded"] + refund["amount"]}
    with pytest.raises(ToolRejected, match=f"return {rma['rma']} was refunded already"):  # another run, honestly pinned
        await registry.invoke("returns.refund", again, ctx("other/f/1"))
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


@pytest.mark.parametrize("rma", ["RMA\u0663", "RMA\u00b9", "RMA", "RMA1\n", "rma000001", "..", "RMA1/../RMA2"])
async def test_a_return_number_is_rma_and_ascii_digits(registry: ToolRegistry, rma: str) -> None:
    """Other scripts' digits, superscripts, path tricks: refused as no return, never read as another's."""
    with pytest.raises(ToolRejected):
        await registry.invoke("returns.receive", {"rma": rma}, ctx("r/x/1"))


async def test_a_pinned_refund_happens_only_on_the_order_it_was_decided_on(registry: ToolRegistry) -> None:
    order = await registry.invoke("erp.order.get", {"order_id": "A1004"}, ctx("k"))
    first = {"order_id": order["id"], "amount": 10, "expected_refunded": 0}
    await registry.invoke("erp.refund.create", first, ctx("p/1"))
    with pytest.raises(ToolRejected, match=r"had 10\.00 refunded, not the 0\.00 this refund was decided on"):
        await registry.invoke("erp.refund.create", first, ctx("p/2"))  # decided before p/1 landed
    await registry.invoke("erp.refund.create", {**first, "expected_refunded": 10}, ctx("p/3"))
    assert (await registry.invoke("erp.order.get", {"order_id": "A1004"}, ctx("k")))["refunded"] == pytest.approx(20)


async def test_two_pinned_refunds_at_once_on_one_order_one_happens(registry: ToolRegistry) -> None:
    """Both decided on "nothing refunded yet", each within a limit alone: only one may pass."""
    order = await registry.invoke("erp.order.get", {"order_id": "A1005"}, ctx("k"))
    part = {"order_id": order["id"], "amount": round(order["paid"] / 10, 2), "expected_refunded": 0}
    results = await asyncio.gather(
        *(registry.invoke("erp.refund.create", part, ctx(f"race/{i}")) for i in range(6)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(results) - len(refused) == 1 and all(isinstance(r, ToolRejected) for r in refused), refused
    after = await registry.invoke("erp.order.get", {"order_id": order["id"]}, ctx("k"))
    assert after["refunded"] == pytest.approx(part["amount"])


async def test_refunds_of_one_return_at_once_one_happens(registry: ToolRegistry) -> None:
    """Runs refunding one return at once, none pinned (each approved, say): it is paid out once,
    on an order that could pay it out more than once."""
    order, ask, decision = await first_eligible(registry)
    while order["paid"] - decision["refunded"] < 2 * decision["refund_amount"]:
        order, ask, decision = await first_eligible(registry, int(order["id"][1:]) + 1)
    rma = (await registry.invoke("returns.authorize", ask, ctx("r/a/1")))["rma"]
    results = await asyncio.gather(
        *(registry.invoke("returns.refund", {"rma": rma}, ctx(f"race/{i}")) for i in range(4)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(results) - len(refused) == 1, refused
    assert all(isinstance(r, ToolRejected) and "refunded already" in str(r) for r in refused), refused
    after = await registry.invoke("erp.order.get", {"order_id": order["id"]}, ctx("k"))
    assert after["refunded"] == pytest.approx(decision["refunded"] + decision["refund_amount"])
