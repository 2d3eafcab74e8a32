"""The CRM contract, implemented by the embedded CRM and its HTTP client alike."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from pydantic import BaseModel


class CustomerView(BaseModel):
    id: str
    name: str
    email: str
    phone: str
    language: str
    tier: str
    address: str


class TicketRequest(BaseModel):
    customer_id: str
    subject: str
    order_id: str | None = None
    note: str | None = None


class TicketView(BaseModel):
    ticket_id: str
    customer_id: str
    subject: str
    status: str
    order_id: str | None
    created_at: datetime


class CrmBackend(Protocol):
    async def get_customer(self, customer_id: str) -> CustomerView: ...

    async def open_ticket(self, request: TicketRequest, idempotency_key: str) -> TicketView: ...
