"""What the helpdesk posts when a customer writes in: their words, and who they are.

``event_id`` is the helpdesk's ID of the event, the same in every delivery of it; it is in
the signed body, so a captured body cannot be replayed under a new ID to start a second run.
The order, the lines, the quantities and the item's condition are read from ``message`` by the
graph (older payloads that still send ``condition`` or ``quantity`` are accepted; those fields
are ignored).
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class CustomerMessage(BaseModel):
    event_id: str = Field(min_length=1, max_length=100)
    ticket: str = Field(min_length=1, max_length=64)
    customer_id: str = Field(pattern=r"^C[0-9]{5}$")
    message: str = Field(min_length=1, max_length=2000)
