"""The business systems as REST services on loopback, and the HTTP adapters that speak to them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chamberlain.tools import ToolContext, ToolRejected, ToolUnavailable
from chamberlain.tools._business import business_tools, crm_backend, erp_backend
from chamberlain.tools._seed import seed
from chamberlain.tools.crm.api import crm_api
from chamberlain.tools.crm.embedded import EmbeddedCrm
from chamberlain.tools.erp.api import erp_api
from chamberlain.tools.erp.client import HttpErp
from chamberlain.tools.erp.contract import RefundRequest
from chamberlain.tools.erp.embedded import EmbeddedErp
from tests.support.servers import serving


@pytest.fixture
def services(database_url: str) -> Iterator[tuple[str, str, EmbeddedErp]]:
    erp = EmbeddedErp(database_url)
    crm = EmbeddedCrm(erp.engine)
    seed(erp, crm, customers=30, orders=100)
    with serving(erp_api(erp)) as erp_url, serving(crm_api(crm)) as crm_url:
        yield erp_url, crm_url, erp


def ctx(key: str) -> ToolContext:
    return ToolContext(step_id=key, idempotency_key=key)


async def test_adapters_work_the_same_over_http(services: tuple[str, str, EmbeddedErp], tmp_path: Path) -> None:
    erp_url, crm_url, embedded = services
    remote = business_tools(erp_backend(erp_url), crm_backend(crm_url), labels_dir=tmp_path)
    local = business_tools(embedded, EmbeddedCrm(embedded.engine), labels_dir=tmp_path)
    args = {"order_id": "A1020"}
    assert await remote.invoke("erp.order.get", args, ctx("k-1")) == await local.invoke(
        "erp.order.get", args, ctx("k-1")
    )
    customer = (await remote.invoke("erp.order.get", args, ctx("k-1")))["customer_id"]
    assert (await remote.invoke("crm.customer.get", {"customer_id": customer}, ctx("k-2")))["id"] == customer
    first = await remote.invoke("erp.refund.create", {"order_id": "A1020", "amount": 5}, ctx("run-h/refund/1"))
    again = await remote.invoke("erp.refund.create", {"order_id": "A1020", "amount": 5}, ctx("run-h/refund/1"))
    assert first == again and (await embedded.get_order("A1020")).refunded == pytest.approx(5)


async def test_http_errors_map_to_tool_errors(services: tuple[str, str, EmbeddedErp]) -> None:
    erp_url, _, embedded = services
    remote = HttpErp(erp_url)
    with pytest.raises(ToolRejected, match="GET /orders/A9999: 404 no order A9999"):
        await remote.get_order("A9999")
    paid = (await embedded.get_order("A1021")).paid
    with pytest.raises(ToolRejected, match=r"POST /refunds: 409 refund of .* exceeds"):
        await remote.refund(RefundRequest(order_id="A1021", amount=paid + 1), "run-h/refund/2")
    async with httpx.AsyncClient(base_url=erp_url) as client:  # the contract's own validation: 422 names the field
        response = await client.post("/refunds", json={"order_id": "A1021", "amount": 1})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]


async def test_server_failures_are_retryable() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"detail": "maintenance"})

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(ToolUnavailable, match="503 maintenance"):
        await HttpErp("http://erp", transport=httpx.MockTransport(broken)).get_order("A1")
    with pytest.raises(ToolUnavailable, match="timed out"):
        await HttpErp("http://erp", transport=httpx.MockTransport(slow)).get_order("A1")
    with pytest.raises(ToolUnavailable, match="failed: ConnectError"):
        await HttpErp("http://127.0.0.1:9").get_order("A1")


async def test_the_contract_is_documented_by_openapi(services: tuple[str, str, EmbeddedErp]) -> None:
    erp_url, crm_url, _ = services
    async with httpx.AsyncClient() as client:
        erp_schema = (await client.get(f"{erp_url}/openapi.json")).json()
        crm_schema = (await client.get(f"{crm_url}/openapi.json")).json()
    assert {"/orders/{order_id}", "/refunds", "/returns", "/returns/{rma}", "/returns/{rma}/receive"} <= set(
        erp_schema["paths"]
    )
    assert {"/customers/{customer_id}", "/tickets"} <= set(crm_schema["paths"])
    assert "OrderView" in erp_schema["components"]["schemas"]


async def test_concurrent_refunds_over_http_never_exceed_the_payment(services: tuple[str, str, EmbeddedErp]) -> None:
    erp_url, _, embedded = services
    paid = (await embedded.get_order("A1022")).paid
    part = round(paid * 0.4, 2)
    remote = HttpErp(erp_url)
    results = await asyncio.gather(
        *(remote.refund(RefundRequest(order_id="A1022", amount=part), f"run-c{i}/refund/1") for i in range(6)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 2
    assert (await embedded.get_order("A1022")).refunded == pytest.approx(2 * part)
