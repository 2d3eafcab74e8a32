"""The ERP over HTTP: the same :class:`ErpBackend` contract, spoken to a REST service."""

from __future__ import annotations

import httpx
from pydantic import RootModel

from chamberlain.tools._http import JsonClient, segment
from chamberlain.tools.erp.contract import (
    OrderStatusView,
    OrderView,
    RefundRequest,
    RefundView,
    ReturnRefundRequest,
    RmaRequest,
    RmaView,
    StockView,
)


class _MaybeRma(RootModel[RmaView | None]):
    pass


class HttpErp:
    def __init__(
        self, base_url: str, *, timeout: float = 10.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.http = JsonClient(base_url, timeout=timeout, transport=transport)

    async def get_order(self, order_id: str) -> OrderView:
        return await self.http.request("GET", f"/orders/{segment(order_id)}", OrderView)

    async def get_stock(self, sku: str, warehouse: str) -> StockView:
        return await self.http.request("GET", "/stock", StockView, params={"sku": sku, "warehouse": warehouse})

    async def order_status(self, order_id: str) -> OrderStatusView:
        return await self.http.request("GET", f"/orders/{segment(order_id)}/status", OrderStatusView)

    async def cancel_order(self, order_id: str, idempotency_key: str) -> OrderStatusView:
        path = f"/orders/{segment(order_id)}/cancel"
        return await self.http.request("POST", path, OrderStatusView, idempotency_key=idempotency_key)

    async def refund(self, request: RefundRequest, idempotency_key: str) -> RefundView:
        return await self.http.request("POST", "/refunds", RefundView, body=request, idempotency_key=idempotency_key)

    async def refund_return(self, rma: str, expected_refunded: float | None, idempotency_key: str) -> RefundView:
        body = ReturnRefundRequest(expected_refunded=expected_refunded)
        path = f"/returns/{segment(rma)}/refund"
        return await self.http.request("POST", path, RefundView, body=body, idempotency_key=idempotency_key)

    async def authorize_return(self, request: RmaRequest, idempotency_key: str) -> RmaView:
        return await self.http.request("POST", "/returns", RmaView, body=request, idempotency_key=idempotency_key)

    async def get_return(self, rma: str) -> RmaView:
        return await self.http.request("GET", f"/returns/{segment(rma)}", RmaView)

    async def find_return(self, idempotency_key: str) -> RmaView | None:
        found = await self.http.request("GET", "/returns", _MaybeRma, params={"idempotency_key": idempotency_key})
        return found.root

    async def receive_return(self, rma: str, idempotency_key: str) -> RmaView:
        return await self.http.request(
            "POST", f"/returns/{segment(rma)}/receive", RmaView, idempotency_key=idempotency_key
        )
