"""What the helpdesk posts when a customer asks to return something.

``event_id`` is the helpdesk's ID of the event, the same in every delivery of it; it is in
the signed body, so a captured body cannot be replayed under a new ID to start a second run.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ReturnRequested(BaseModel):
    event_id: str = Field(min_length=1, max_length=100)
    ticket: str = Field(min_length=1, max_length=64)
    customer_id: str = Field(pattern=r"^C[0-9]{5}$")
    message: str = Field(min_length=1, max_length=2000)
    condition: Literal["unopened", "opened", "damaged_on_arrival", "wrong_item", "used"] = "unopened"
    quantity: int = Field(1, ge=1, le=99)
