"""The embedded CRM on SQLModel; ticket writes are exactly-once per idempotency key."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, select

from chamberlain.tools._database import open_engine
from chamberlain.tools._exceptions import ToolRejected
from chamberlain.tools.crm.contract import CustomerView, TicketRequest, TicketView
from chamberlain.tools.crm.models import Customer, Note, Ticket


class EmbeddedCrm:
    def __init__(self, url: str | Engine) -> None:
        self.engine = open_engine(url) if isinstance(url, str) else url

    def create_tables(self) -> None:
        SQLModel.metadata.create_all(self.engine)

    async def get_customer(self, customer_id: str) -> CustomerView:
        return await asyncio.to_thread(self._get_customer, customer_id)

    def _get_customer(self, customer_id: str) -> CustomerView:
        with Session(self.engine) as session:
            customer = session.get(Customer, customer_id)
            if customer is None:
                raise ToolRejected(f"no customer {customer_id}")
            return CustomerView(**customer.model_dump())

    async def open_ticket(self, request: TicketRequest, idempotency_key: str) -> TicketView:
        return await asyncio.to_thread(self._open_ticket, request, idempotency_key)

    def _open_ticket(self, request: TicketRequest, key: str) -> TicketView:
        with Session(self.engine) as session:
            if existing := session.exec(select(Ticket).where(Ticket.idempotency_key == key)).first():
                return _view(existing)
            if session.get(Customer, request.customer_id) is None:
                raise ToolRejected(f"no customer {request.customer_id}")
            now = datetime.now(UTC)
            ticket = Ticket(
                customer_id=request.customer_id,
                subject=request.subject,
                order_id=request.order_id,
                idempotency_key=key,
                created_at=now,
            )
            session.add(ticket)
            try:
                session.flush()
                if request.note and ticket.id is not None:
                    session.add(
                        Note(
                            ticket_id=ticket.id, author="agent", body=request.note, idempotency_key=key, created_at=now
                        )
                    )
                session.commit()
            except IntegrityError:
                session.rollback()
                return _view(session.exec(select(Ticket).where(Ticket.idempotency_key == key)).one())
            session.refresh(ticket)
            return _view(ticket)


def _view(ticket: Ticket) -> TicketView:
    return TicketView(
        ticket_id=f"T{ticket.id:06d}",
        customer_id=ticket.customer_id,
        subject=ticket.subject,
        status=ticket.status,
        order_id=ticket.order_id,
        created_at=ticket.created_at,
    )
