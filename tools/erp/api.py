"""The ERP as a REST service (FastAPI): the documented contract of ``tools.erp.contract``."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Header

from chamberlain.tools._http import serve_errors
from chamberlain.tools.erp.contract import (
    ErpBackend,
    OrderStatusView,
    OrderView,
    RefundRequest,
    RefundView,
    ReturnRefundRequest,
    RmaRequest,
    RmaView,
    StockView,
)

IdempotencyKey = Annotated[
    str, Header(alias="Idempotency-Key", min_length=1, description="repeat it to get the first result")
]


def erp_api(erp: ErpBackend) -> FastAPI:
    app = FastAPI(title="ERP", version="1", description="Orders, payments, refunds and returns. Writes are idempotent.")

    @app.get("/orders/{order_id}")
    async def get_order(order_id: str) -> OrderView:
        return await erp.get_order(order_id)

    @app.get("/stock")
    async def get_stock(sku: str, warehouse: str) -> StockView:
        return await erp.get_stock(sku, warehouse)

    @app.get("/orders/{order_id}/status")
    async def order_status(order_id: str) -> OrderStatusView:
        return await erp.order_status(order_id)

    @app.post("/orders/{order_id}/cancel")
    async def cancel_order(order_id: str, key: IdempotencyKey) -> OrderStatusView:
        return await erp.cancel_order(order_id, key)

    @app.post("/refunds")
    async def refund(request: RefundRequest, key: IdempotencyKey) -> RefundView:
        return await erp.refund(request, key)

    @app.post("/returns")
    async def authorize_return(request: RmaRequest, key: IdempotencyKey) -> RmaView:
        return await erp.authorize_return(request, key)

    @app.get("/returns")
    async def find_return(idempotency_key: str) -> RmaView | None:
        return await erp.find_return(idempotency_key)

    @app.get("/returns/{rma}")
    async def get_return(rma: str) -> RmaView:
        return await erp.get_return(rma)

    @app.post("/returns/{rma}/refund")
    async def refund_return(rma: str, request: ReturnRefundRequest, key: IdempotencyKey) -> RefundView:
        return await erp.refund_return(rma, request.expected_refunded, key)

    @app.post("/returns/{rma}/receive")
    async def receive_return(rma: str, key: IdempotencyKey) -> RmaView:
        return await erp.receive_return(rma, key)

    return serve_errors(app)
