"""The CRM's tables: customers, accounts, tickets, notes and interactions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel


class Customer(SQLModel, table=True):
    __tablename__ = "crm_customer"
    id: str = Field(primary_key=True)
    name: str
    email: str
    phone: str
    language: str = "zh"
    tier: str = "standard"  # standard, gold, vip
    address: str = ""


class Account(SQLModel, table=True):
    __tablename__ = "crm_account"
    id: int | None = Field(default=None, primary_key=True)
    customer_id: str = Field(index=True, foreign_key="crm_customer.id")
    channel: str  # web, app, tmall, jd
    opened_at: datetime


class Ticket(SQLModel, table=True):
    __tablename__ = "crm_ticket"
    __table_args__ = (UniqueConstraint("idempotency_key", name="ticket_once_per_key"),)
    id: int | None = Field(default=None, primary_key=True)
    customer_id: str = Field(index=True, foreign_key="crm_customer.id")
    subject: str
    status: str = "open"
    order_id: str | None = None
    idempotency_key: str
    created_at: datetime


class Note(SQLModel, table=True):
    __tablename__ = "crm_note"
    __table_args__ = (UniqueConstraint("idempotency_key", name="note_once_per_key"),)
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(index=True, foreign_key="crm_ticket.id")
    author: str
    body: str
    idempotency_key: str
    created_at: datetime


class Interaction(SQLModel, table=True):
    __tablename__ = "crm_interaction"
    id: int | None = Field(default=None, primary_key=True)
    customer_id: str = Field(index=True, foreign_key="crm_customer.id")
    channel: str
    summary: str
    at: datetime
