"""Webhook payload models for the ingress tests."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Counted(BaseModel):
    id: str | None = None
    limit: int = Field(ge=0, le=5)
    customer: str = Field(min_length=1)
