"""The CRM as a REST service (FastAPI)."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Header

from chamberlain.tools._http import serve_errors
from chamberlain.tools.crm.contract import CrmBackend, CustomerView, TicketRequest, TicketView

IdempotencyKey = Annotated[str, Header(alias="Idempotency-Key", min_length=1)]


def crm_api(crm: CrmBackend) -> FastAPI:
    app = FastAPI(title="CRM", version="1", description="Customers and tickets. Writes are idempotent.")

    @app.get("/customers/{customer_id}")
    async def get_customer(customer_id: str) -> CustomerView:
        return await crm.get_customer(customer_id)

    @app.post("/tickets")
    async def open_ticket(request: TicketRequest, key: IdempotencyKey) -> TicketView:
        return await crm.open_ticket(request, key)

    return serve_errors(app)
