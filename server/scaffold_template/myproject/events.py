"""What the helpdesk posts when a customer asks for a refund (the webhook's payload)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class RefundAsked(BaseModel):
    event_id: str = Field(min_length=1, max_length=100, description="the same in every delivery of one event")
    customer_id: str = Field(pattern=r"^C[0-9]{5}$")
    order_id: str = Field(pattern=r"^A[0-9]{4}$")
    message: str = Field(min_length=1, max_length=2000)
