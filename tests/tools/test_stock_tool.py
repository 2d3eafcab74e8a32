"""The ERP stock tool: a read of what a warehouse has on hand, the same embedded and over HTTP,
on SQLite and PostgreSQL — current after a restock, refusing what it does not know by name."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlmodel import Session

from chamberlain.tools import Effect, ToolContext, ToolInputInvalid, ToolRegistry, ToolRejected
from chamberlain.tools._business import business_tools, crm_backend, erp_backend
from chamberlain.tools._seed import seed
from chamberlain.tools.crm.api import crm_api
from chamberlain.tools.crm.embedded import EmbeddedCrm
from chamberlain.tools.erp.api import erp_api
from chamberlain.tools.erp.embedded import EmbeddedErp
from chamberlain.tools.erp.models import Inventory, Product
from tests.support.servers import serving

ODD_SKU = "螺丝 M4/10?&warehouse=HK1"  # non-Latin, a slash and a query string of its own


@pytest.fixture
def erp(database_url: str) -> EmbeddedErp:
    erp = EmbeddedErp(database_url)
    seed(erp, EmbeddedCrm(erp.engine), customers=10, orders=30)
    with Session(erp.engine) as session:
        session.add(Product(sku=ODD_SKU, name="十字螺丝 M4", category="hardware", price=0.2))
        session.flush()
        session.add(Inventory(sku=ODD_SKU, warehouse="SH1", on_hand=7))
        session.commit()
    return erp


@pytest.fixture(params=["embedded", "http"])
def registry(request: pytest.FixtureRequest, erp: EmbeddedErp, tmp_path: Path) -> Iterator[ToolRegistry]:
    with ExitStack() as stack:
        if request.param == "http":
            erp_url = stack.enter_context(serving(erp_api(erp)))
            crm_url = stack.enter_context(serving(crm_api(EmbeddedCrm(erp.engine))))
            yield business_tools(erp_backend(erp_url), crm_backend(crm_url), labels_dir=tmp_path)
        else:
            yield business_tools(erp, EmbeddedCrm(erp.engine), labels_dir=tmp_path)


def ctx() -> ToolContext:
    return ToolContext(step_id="s", idempotency_key="s")


async def test_stock_is_read_as_the_erp_has_it_now(registry: ToolRegistry, erp: EmbeddedErp) -> None:
    adapter = registry["erp.stock.get"]
    assert (adapter.effect, adapter.policy_action, dict(adapter.labels)) == (Effect.READ, "erp.stock.read", {})
    order = await erp.get_order("A1001")
    sku, warehouse = order.lines[0].sku, order.warehouse
    with Session(erp.engine) as session:
        expected = session.get(Inventory, (sku, warehouse))
        assert expected is not None
        before = expected.on_hand
        expected.on_hand = before + 3  # a restock between two reads
        session.add(expected)
        session.commit()
    stock = await registry.invoke("erp.stock.get", {"sku": sku, "warehouse": warehouse}, ctx())
    assert stock == {"sku": sku, "name": order.lines[0].name, "warehouse": warehouse, "on_hand": before + 3}
    resource = await adapter.resource_of({"sku": sku, "warehouse": warehouse})
    assert (resource.type, resource.id) == ("Stock", f"{warehouse}/{sku}")


async def test_odd_skus_reach_their_own_record_and_no_other(registry: ToolRegistry) -> None:
    """A SKU with a slash, a query string and Chinese text reads its own row over HTTP too,
    never another warehouse's."""
    stock = await registry.invoke("erp.stock.get", {"sku": ODD_SKU, "warehouse": "SH1"}, ctx())
    assert (stock["sku"], stock["name"], stock["on_hand"]) == (ODD_SKU, "十字螺丝 M4", 7)
    with pytest.raises(ToolRejected, match="warehouse HK1 keeps no stock of SKU"):
        await registry.invoke("erp.stock.get", {"sku": ODD_SKU, "warehouse": "HK1"}, ctx())


async def test_unknown_stock_is_refused_by_name(registry: ToolRegistry) -> None:
    with pytest.raises(ToolRejected, match="warehouse SH1 keeps no stock of SKU NOPE-1"):
        await registry.invoke("erp.stock.get", {"sku": "NOPE-1", "warehouse": "SH1"}, ctx())
    with pytest.raises(ToolInputInvalid, match="warehouse"):
        await registry.invoke("erp.stock.get", {"sku": "NOPE-1", "warehouse": ""}, ctx())
