"""The CRM over HTTP: the same :class:`CrmBackend` contract, spoken to a REST service."""

from __future__ import annotations

import httpx

from chamberlain.tools._http import JsonClient, segment
from chamberlain.tools.crm.contract import CustomerView, TicketRequest, TicketView


class HttpCrm:
    def __init__(
        self, base_url: str, *, timeout: float = 10.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.http = JsonClient(base_url, timeout=timeout, transport=transport)

    async def get_customer(self, customer_id: str) -> CustomerView:
        return await self.http.request("GET", f"/customers/{segment(customer_id)}", CustomerView)

    async def open_ticket(self, request: TicketRequest, idempotency_key: str) -> TicketView:
        return await self.http.request("POST", "/tickets", TicketView, body=request, idempotency_key=idempotency_key)
